package mockupstream

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// sseWriter writes a server-sent-event stream of OpenAI chunks, flushing each one. It
// applies Options.ChunkDelay between chunks and FailCutStream after the second chunk.
type sseWriter struct {
	w      http.ResponseWriter
	rc     *http.ResponseController
	r      *http.Request
	delay  time.Duration
	cut    bool
	events int
}

const cutAfterEvents = 2

func (s *Server) startSSE(w http.ResponseWriter, r *http.Request, fail Failure) *sseWriter {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	w.WriteHeader(http.StatusOK)
	return &sseWriter{w: w, rc: http.NewResponseController(w), r: r, delay: s.opts.ChunkDelay, cut: fail == FailCutStream}
}

// event sends v as one "data: <json>" event.
func (e *sseWriter) event(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode chunk: %w", err)
	}
	return e.write(b)
}

// done ends the stream with "data: [DONE]".
func (e *sseWriter) done() error { return e.write([]byte("[DONE]")) }

func (e *sseWriter) write(data []byte) error {
	if e.cut && e.events == cutAfterEvents {
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
	if _, err := fmt.Fprintf(e.w, "data: %s\n\n", data); err != nil {
		return errDropped
	}
	if err := e.rc.Flush(); err != nil {
		return errDropped
	}
	e.events++
	return nil
}
