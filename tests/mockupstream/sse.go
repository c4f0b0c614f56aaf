package mockupstream

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// sseWriter writes a server-sent-event stream (OpenAI chunks or Anthropic events),
// flushing each event. It applies Options.ChunkDelay between events and FailCutStream
// after cutAfter events.
type sseWriter struct {
	w        http.ResponseWriter
	rc       *http.ResponseController
	r        *http.Request
	delay    time.Duration
	cut      bool
	cutAfter int
	events   int
}

// cutAfterEvents is where FailCutStream cuts an OpenAI stream: after the role chunk and
// the first content chunk.
const cutAfterEvents = 2

func (s *Server) startSSE(w http.ResponseWriter, r *http.Request, fail Failure) *sseWriter {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	w.WriteHeader(http.StatusOK)
	return &sseWriter{w: w, rc: http.NewResponseController(w), r: r, delay: s.opts.ChunkDelay, cut: fail == FailCutStream, cutAfter: cutAfterEvents}
}

// event sends v as one "data: <json>" event.
func (e *sseWriter) event(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode chunk: %w", err)
	}
	return e.write("", b)
}

// named sends v as one "event: <name>" event with "data: <json>", as Anthropic does.
func (e *sseWriter) named(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s event: %w", name, err)
	}
	return e.write(name, b)
}

// done ends the stream with "data: [DONE]".
func (e *sseWriter) done() error { return e.write("", []byte("[DONE]")) }

func (e *sseWriter) write(name string, data []byte) error {
	if e.cut && e.events == e.cutAfter {
		dropConnection(e.w, false)
		return errDropped
	}
	if e.events > 0 && e.delay > 0 {
		t := time.NewTimer(e.delay)
		select {
		case <-t.C:
		case <-e.r.Context().Done():
			t.Stop()
			return errDropped
		}
	}
	if name != "" {
		if _, err := fmt.Fprintf(e.w, "event: %s\n", name); err != nil {
			return errDropped
		}
	}
	if _, err := fmt.Fprintf(e.w, "data: %s\n\n", data); err != nil {
		return errDropped
	}
	if err := e.rc.Flush(); err != nil {
		return errDropped
	}
	e.events++
	return nil
}
