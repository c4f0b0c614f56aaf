// Package usage counts tokens for the data plane's tokens_per_hour budget (docs/design.md
// §5). Before the upstream call it estimates a request's prompt tokens
// (EstimatePrompt); afterwards it reads the usage the upstream reports, from a whole
// response (FromResponse) or chunk by chunk from a stream (StreamMeter), which also
// hides the usage chunk the gateway asked for from clients that did not
// (WithStreamUsage). When an upstream reports nothing, the delivered text is counted
// with the real tokenizer (CompletionText, StreamMeter.CompletionTokens), never with a
// characters-per-token rule.
//
// Every count uses OpenAI's o200k_base encoding (the gpt-4o family), whatever the
// model: for other families it is an estimate of the right order, and the
// reservation is settled to the provider's reported usage whenever there is one.
//
// The tokenizer's vocabulary is built on first use, which takes tens to hundreds of
// milliseconds; call Warm in the background at start so that no request pays for it.
// Everything in the package is safe for concurrent use except a StreamMeter, which
// belongs to one stream.
package usage

import (
	"strings"
	"sync"

	"github.com/tiktoken-go/tokenizer"
)

// o200k holds the shared codec, built once on first use. The codec is safe for
// concurrent use: its vocabulary is read-only and its split pattern takes a runner
// per call.
var o200k struct {
	once  sync.Once
	codec tokenizer.Codec
	err   error
}

func loadCodec() (tokenizer.Codec, error) {
	o200k.once.Do(func() {
		o200k.codec, o200k.err = tokenizer.Get(tokenizer.O200kBase)
	})
	return o200k.codec, o200k.err
}

// Warm builds the tokenizer now, so that the first request to count tokens does not
// pay for it. It blocks until done; run it in a goroutine at start. Calling it again
// costs next to nothing.
func Warm() {
	CountText("warm")
}

// segmentBytes is the length from which CountText cuts text into segments (see
// segmentEnd).
const segmentBytes = 256

// CountText returns the number of o200k_base tokens in s. If the tokenizer fails, it
// counts len(s), the number of bytes, which is never less than the number of tokens;
// it never panics.
//
// The tokenizer (tiktoken-go) agrees with OpenAI's tiktoken except on a whitespace
// run holding several line breaks, which it splits at each run of line breaks where
// tiktoken keeps it whole: " \n \n" is 2 tokens here and 1 there. That overestimates
// whitespace-heavy text (blank lines with indentation, say) by a few tokens.
//
// The tokenizer's split pattern takes time quadratic in the length of a whitespace
// run holding line breaks (a prompt of " \n" repeated costs seconds per 64 KiB), so
// CountText counts long text in segments cut only where the pattern ends a piece
// anyway: the count is the tokenizer's own, in time linear in len(s).
func CountText(s string) int64 {
	if s == "" {
		return 0
	}
	c, err := loadCodec()
	if err != nil {
		return int64(len(s))
	}
	var n int64
	for s != "" {
		end := segmentEnd(s)
		n += countSegment(c, s[:end])
		s = s[end:]
	}
	return n
}

// countSegment counts the tokens of one segment, falling back to its length in bytes.
// It recovers from a panic in the tokenizer: the text comes from clients and
// upstreams, and a tokenizer bug must not take down the request path.
func countSegment(c tokenizer.Codec, seg string) (n int64) {
	defer func() {
		if recover() != nil {
			n = int64(len(seg))
		}
	}()
	k, err := c.Count(seg)
	if err != nil {
		return int64(len(seg))
	}
	return int64(k)
}

// segmentEnd returns the length of the first segment of s to count on its own: all
// of s when it is short, else s up to the end of the first run of line breaks
// ('\r', '\n') after segmentBytes that is not followed by '/'. The o200k split
// pattern, as this tokenizer implements it, always ends a piece there: a piece
// reaching a line break is either whitespace, which ends with its first run of line
// breaks (the pattern's \s*[\r\n]+ backtracks to the first, not the last, line
// break), or punctuation followed by [\r\n/]*, which ends where '/' does not follow.
// So the segments' counts add up to the count of the whole; TestCountTextSegments
// checks this against the tokenizer.
func segmentEnd(s string) int {
	if len(s) <= segmentBytes {
		return len(s)
	}
	for i := segmentBytes; ; {
		j := strings.IndexAny(s[i:], "\r\n")
		if j < 0 {
			return len(s)
		}
		k := i + j
		for k < len(s) && (s[k] == '\r' || s[k] == '\n') {
			k++
		}
		if k == len(s) || s[k] != '/' {
			return k
		}
		i = k
	}
}
