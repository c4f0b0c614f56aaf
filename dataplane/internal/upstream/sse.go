package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"sync"
)

// MaxEventBytes bounds one server-sent event; OpenAI's events are a few KiB.
const MaxEventBytes = 1 << 20

// ErrEventTooLong is returned by EventReader.Next for an event over its limit.
var ErrEventTooLong = errors.New("server-sent event too long")

// EventReader splits a text/event-stream into events without buffering more than
// one event. It is not safe for concurrent use.
type EventReader struct {
	r   *bufio.Reader
	max int
	buf []byte
}

// readers holds the 32 KiB read buffers of released EventReaders, so that a stream
// does not allocate one.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 32<<10) }}

// NewEventReader reads events from r, each at most max bytes. Call Release when done.
func NewEventReader(r io.Reader, max int) *EventReader {
	br := readers.Get().(*bufio.Reader)
	br.Reset(r)
	return &EventReader{r: br, max: max}
}

// Release returns the reader's buffer for reuse. The EventReader, and any event it
// returned, must not be used afterwards. Release is idempotent.
func (er *EventReader) Release() {
	if er.r == nil {
		return
	}
	er.r.Reset(nil)
	readers.Put(er.r)
	er.r, er.buf = nil, nil
}

// Next returns the next event: its lines up to and including the blank line that
// ends it (a lone blank line is returned as an event of its own). The slice is valid
// until the next call. At the clean end of the stream Next returns io.EOF; a stream
// that ends inside an event gives io.ErrUnexpectedEOF and drops the partial event.
func (er *EventReader) Next() ([]byte, error) {
	er.buf = er.buf[:0]
	atLineStart := true
	for {
		seg, err := er.r.ReadSlice('\n')
		if len(er.buf)+len(seg) > er.max {
			return nil, ErrEventTooLong
		}
		er.buf = append(er.buf, seg...)
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			atLineStart = false // the rest of this line follows
			continue
		case errors.Is(err, io.EOF):
			if len(er.buf) == 0 {
				return nil, io.EOF
			}
			return nil, io.ErrUnexpectedEOF
		case err != nil:
			return nil, err
		}
		if atLineStart && isBlankLine(seg) {
			return er.buf, nil
		}
		atLineStart = true
	}
}

// EventReady reports whether a whole event is already buffered, so that the next
// call to Next returns without waiting for the stream. A relay flushes its client
// only when no event is ready: events that arrived together leave together, and an
// event is never held back waiting for the upstream. It may report false when an
// event is ready, never true when none is.
func (er *EventReader) EventReady() bool {
	buffered, _ := er.r.Peek(er.r.Buffered())
	// A blank line ends an event; Next starts at the start of a line, so the first
	// "\n\n" or "\n\r\n" ends an event at the latest.
	return bytes.Contains(buffered, []byte("\n\n")) || bytes.Contains(buffered, []byte("\n\r\n"))
}

func isBlankLine(line []byte) bool {
	return len(line) == 1 && line[0] == '\n' || len(line) == 2 && line[0] == '\r' && line[1] == '\n'
}

// IsDone reports whether event is OpenAI's end-of-stream marker, "data: [DONE]".
func IsDone(event []byte) bool {
	for len(event) > 0 {
		line := event
		if i := bytes.IndexByte(event, '\n'); i >= 0 {
			line, event = event[:i], event[i+1:]
		} else {
			event = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if v, ok := bytes.CutPrefix(line, []byte("data:")); ok && string(bytes.TrimPrefix(v, []byte(" "))) == "[DONE]" {
			return true
		}
	}
	return false
}
