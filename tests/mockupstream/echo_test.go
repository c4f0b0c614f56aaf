package mockupstream

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestEchoChunks(t *testing.T) {
	got := echoChunks("key AKIAQYLPMN5HHHFPZAM2 ünïcode")
	if strings.Join(got, "") != "key AKIAQYLPMN5HHHFPZAM2 ünïcode" {
		t.Fatalf("chunks %q do not join to the text", got)
	}
	for _, c := range got {
		if len(c) > EchoChunkBytes || !utf8.ValidString(c) {
			t.Fatalf("chunk %q", c)
		}
	}
	if len(got) < 4 {
		t.Fatalf("a key is not split across chunks: %q", got)
	}
	if r, ok := echoReply("  echo: hi there"); !ok || r != "hi there" {
		t.Fatalf("echoReply = %q %v", r, ok)
	}
	if _, ok := echoReply("hello"); ok {
		t.Fatal("a plain message asked for an echo")
	}
}
