package upstream_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/portcullis-gw/portcullis/dataplane/internal/upstream"
)

func readAll(t testing.TB, input []byte, max int) ([][]byte, error) {
	t.Helper()
	er := upstream.NewEventReader(bytes.NewReader(input), max)
	defer er.Release() // so the cases below reuse each other's buffers
	var events [][]byte
	for range len(input) + 1 { // each event consumes at least one byte
		ev, err := er.Next()
		if err != nil {
			return events, err
		}
		events = append(events, bytes.Clone(ev))
	}
	t.Fatalf("EventReader returned more events than input bytes")
	return nil, nil
}

func TestReleasedReaderForgetsItsStream(t *testing.T) {
	for i := range 20 { // enough rounds for the pool to hand a released buffer back
		first := upstream.NewEventReader(strings.NewReader("data: old-1\n\ndata: old-2\n\ndata: old-3"), upstream.MaxEventBytes)
		if ev, err := first.Next(); err != nil || string(ev) != "data: old-1\n\n" {
			t.Fatalf("round %d: first event = %q, %v", i, ev, err)
		}
		first.Release() // with old-2 and a partial old-3 still buffered
		first.Release()

		second := upstream.NewEventReader(strings.NewReader("data: new\n\n"), upstream.MaxEventBytes)
		ev, err := second.Next()
		if err != nil || string(ev) != "data: new\n\n" {
			t.Fatalf("round %d: event of a fresh reader = %q, %v", i, ev, err)
		}
		if _, err := second.Next(); !errors.Is(err, io.EOF) {
			t.Fatalf("round %d: after the only event: %v, want EOF", i, err)
		}
		second.Release()
	}
}

func TestEventReady(t *testing.T) {
	tests := []struct {
		name  string
		input string // what the upstream has sent so far; the reader has returned the first event
		want  bool
	}{
		{name: "nothing more", input: "data: 1\n\n"},
		{name: "half a line", input: "data: 1\n\ndata: {\"a\""},
		{name: "a line, no blank line yet", input: "data: 1\n\ndata: 2\n"},
		{name: "a whole event", input: "data: 1\n\ndata: 2\n\n", want: true},
		{name: "a whole crlf event", input: "data: 1\r\n\r\ndata: 2\r\n\r\n", want: true},
		{name: "several events", input: "data: 1\n\ndata: 2\n\ndata: 3\n\ndata: [DONE]\n\n", want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pr, pw := io.Pipe()
			defer pr.Close()
			go func() { _, _ = io.WriteString(pw, tt.input) }() // then stays open, like a live stream
			er := upstream.NewEventReader(pr, upstream.MaxEventBytes)
			defer er.Release()
			if _, err := er.Next(); err != nil {
				t.Fatalf("first event: %v", err)
			}
			if got := er.EventReady(); got != tt.want {
				t.Fatalf("EventReady = %v, want %v", got, tt.want)
			}
			if tt.want {
				if _, err := er.Next(); err != nil { // must not block on the open pipe
					t.Fatalf("ready event: %v", err)
				}
			}
		})
	}
}

func TestEventReader(t *testing.T) {
	long := "data: " + strings.Repeat("x", 40<<10) + "\n\n" // longer than the 32 KiB read buffer
	tests := []struct {
		name    string
		input   string
		max     int
		want    []string
		wantErr error
	}{
		{name: "empty stream", input: "", wantErr: io.EOF},
		{name: "openai chunks and done",
			input: "data: {\"a\":1}\n\ndata: {\"a\":2}\n\ndata: [DONE]\n\n",
			want:  []string{"data: {\"a\":1}\n\n", "data: {\"a\":2}\n\n", "data: [DONE]\n\n"}, wantErr: io.EOF},
		{name: "crlf line endings and multi-line events",
			input: "event: x\r\ndata: 1\r\n\r\nid: 2\ndata: 2\n\n",
			want:  []string{"event: x\r\ndata: 1\r\n\r\n", "id: 2\ndata: 2\n\n"}, wantErr: io.EOF},
		{name: "stray blank line is its own event", input: "\ndata: 1\n\n", want: []string{"\n", "data: 1\n\n"}, wantErr: io.EOF},
		{name: "cut inside an event", input: "data: 1\n\ndata: 2\n", want: []string{"data: 1\n\n"}, wantErr: io.ErrUnexpectedEOF},
		{name: "cut inside a line", input: "data: 1\n\ndata: {\"trunc", want: []string{"data: 1\n\n"}, wantErr: io.ErrUnexpectedEOF},
		{name: "line longer than the read buffer", input: long, want: []string{long}, wantErr: io.EOF},
		{name: "event over the limit", input: "data: 1\n\n" + long, max: 1 << 10, want: []string{"data: 1\n\n"}, wantErr: upstream.ErrEventTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			max := tt.max
			if max == 0 {
				max = upstream.MaxEventBytes
			}
			events, err := readAll(t, []byte(tt.input), max)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("final error = %v, want %v", err, tt.wantErr)
			}
			if len(events) != len(tt.want) {
				t.Fatalf("got %d events, want %d: %q", len(events), len(tt.want), events)
			}
			for i := range events {
				if string(events[i]) != tt.want[i] {
					t.Errorf("event %d = %q, want %q", i, events[i], tt.want[i])
				}
			}
		})
	}
}

func TestIsDone(t *testing.T) {
	tests := []struct {
		event string
		want  bool
	}{
		{"data: [DONE]\n\n", true},
		{"data:[DONE]\r\n\r\n", true},
		{"event: end\ndata: [DONE]\n\n", true},
		{"data: {\"content\":\"[DONE]\"}\n\n", false},
		{"data: [DONE] \n\n", false},
		{": comment [DONE]\n\n", false},
		{"\n", false},
	}
	for _, tt := range tests {
		t.Run(strings.TrimSpace(tt.event), func(t *testing.T) {
			if got := upstream.IsDone([]byte(tt.event)); got != tt.want {
				t.Fatalf("IsDone(%q) = %v, want %v", tt.event, got, tt.want)
			}
		})
	}
}

// endsWithBlankLine reports whether ev's last line is empty ("\n" or "\r\n").
func endsWithBlankLine(ev []byte) bool {
	body, ok := bytes.CutSuffix(ev, []byte("\n"))
	if !ok {
		return false
	}
	body = bytes.TrimSuffix(body, []byte("\r"))
	return len(body) == 0 || body[len(body)-1] == '\n'
}

// FuzzEventReader checks that splitting never panics, never loses or invents bytes,
// and that every event ends with a blank line.
func FuzzEventReader(f *testing.F) {
	f.Add([]byte("data: {\"a\":1}\n\ndata: [DONE]\n\n"))
	f.Add([]byte("data: 1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, input []byte) {
		events, err := readAll(t, input, 4<<10)
		var joined []byte
		for _, ev := range events {
			if !endsWithBlankLine(ev) {
				t.Fatalf("event %q does not end with a blank line", ev)
			}
			joined = append(joined, ev...)
		}
		if !bytes.HasPrefix(input, joined) {
			t.Fatalf("events %q are not a prefix of the input %q", joined, input)
		}
		switch {
		case errors.Is(err, io.EOF):
			if !bytes.Equal(joined, input) {
				t.Fatalf("clean EOF but events %q != input %q", joined, input)
			}
		case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, upstream.ErrEventTooLong):
			if len(joined) == len(input) {
				t.Fatalf("error %v but every byte was returned in events", err)
			}
		default:
			t.Fatalf("unexpected error %v", err)
		}
	})
}
