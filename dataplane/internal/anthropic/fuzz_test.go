package anthropic

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/portcullis-gw/portcullis/dataplane/internal/upstream"
)

// FuzzStreamTranslator feeds arbitrary streams through a StreamTranslator: it must
// never panic, every event it returns must be a data line of JSON or [DONE], and
// nothing may follow [DONE] or an error.
func FuzzStreamTranslator(f *testing.F) {
	conversation, err := os.ReadFile("testdata/conversation.sse")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(conversation, true)
	f.Fuzz(func(t *testing.T, stream []byte, includeUsage bool) {
		tr := NewStreamTranslator("m\"odel", includeUsage)
		events := upstream.NewEventReader(bytes.NewReader(stream), 64<<10)
		defer events.Release()
		var out bytes.Buffer
		ended := false
		for {
			ev, err := events.Next()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, upstream.ErrEventTooLong) {
					t.Fatalf("Next: %v", err)
				}
				break
			}
			b, err := tr.Translate(ev)
			if ended && len(b) > 0 {
				t.Fatalf("output after the end: %q", b)
			}
			out.Write(b)
			if err != nil {
				var se *StreamError
				if !errors.As(err, &se) {
					t.Fatalf("error %v is not a *StreamError", err)
				}
				if !bytes.HasPrefix(b, []byte(`data: {"error":`)) && !bytes.Contains(b, []byte("\ndata: {\"error\":")) {
					t.Fatalf("an error without an error event: %q", b)
				}
				ended = true
			}
			if tr.Done() {
				if !bytes.HasSuffix(out.Bytes(), []byte("data: [DONE]\n\n")) {
					t.Fatalf("Done without [DONE]: %q", out.Bytes())
				}
				ended = true
			}
		}
		assertChunksAreJSON(t, out.String())
		if p, c, _ := tr.Usage(); p < 0 || c < 0 {
			t.Fatalf("negative usage %d, %d", p, c)
		}
	})
}
