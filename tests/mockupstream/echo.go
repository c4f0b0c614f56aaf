package mockupstream

import "strings"

// EchoPrefix starts a last message whose rest the mock answers with, word for word:
// "echo: Your key is …" makes the answer "Your key is …", streamed in pieces of
// EchoChunkBytes, so that a word (a key, an address) is split across events. It lets
// a test make the upstream say something, as a model may.
const EchoPrefix = "echo: "

// EchoChunkBytes is the most text one streamed event of an echo carries.
const EchoChunkBytes = 6

// echoReply is the echo a last message asks for, and whether it asks for one.
func echoReply(last string) (string, bool) {
	return strings.CutPrefix(strings.TrimSpace(last), EchoPrefix)
}

// echoChunks splits s into pieces of at most EchoChunkBytes, on rune boundaries.
func echoChunks(s string) []string {
	var out []string
	for len(s) > 0 {
		n := min(EchoChunkBytes, len(s))
		for n < len(s) && n > 1 && !runeStart(s[n]) {
			n--
		}
		out = append(out, s[:n])
		s = s[n:]
	}
	return out
}

func runeStart(b byte) bool { return b&0xC0 != 0x80 }
