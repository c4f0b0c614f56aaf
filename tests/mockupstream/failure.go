package mockupstream

import (
	"errors"
	"net"
	"net/http"
	"time"
)

// Failure is a failure mode the Server injects into every request (see SetFailure).
type Failure int

// The failure modes.
const (
	// FailNone answers normally.
	FailNone Failure = iota
	// Fail500 answers 500 with an OpenAI server_error body.
	Fail500
	// Fail429 answers 429 with "Retry-After: 1" and an OpenAI rate-limit body.
	Fail429
	// FailSlow waits Options.SlowDelay, or until the client gives up, then answers normally.
	FailSlow
	// FailReset drops the TCP connection with a reset before writing anything.
	FailReset
	// FailCutStream sends the first two chunks of a stream, then closes the connection
	// without "data: [DONE]". A non-streaming answer is cut after half its body.
	FailCutStream
)

// String names f as its constant does.
func (f Failure) String() string {
	switch f {
	case FailNone:
		return "FailNone"
	case Fail500:
		return "Fail500"
	case Fail429:
		return "Fail429"
	case FailSlow:
		return "FailSlow"
	case FailReset:
		return "FailReset"
	case FailCutStream:
		return "FailCutStream"
	}
	return "Failure(?)"
}

// errDropped reports that the response was already dealt with (the connection was
// dropped or the client went away), so nothing is left to write.
var errDropped = errors.New("connection dropped")

// inject applies the failure modes that happen before an answer starts.
func (s *Server) inject(w http.ResponseWriter, r *http.Request, f Failure) error {
	switch f {
	case Fail500:
		return errServer()
	case Fail429:
		w.Header().Set("Retry-After", "1")
		return errRateLimited()
	case FailSlow:
		t := time.NewTimer(s.opts.SlowDelay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return errDropped
		}
	case FailReset:
		dropConnection(w, true)
		return errDropped
	}
	return nil
}

// dropConnection closes the client's connection without finishing the response. With
// reset it sends a TCP RST and nothing else; without, it first flushes what was written.
func dropConnection(w http.ResponseWriter, reset bool) {
	rc := http.NewResponseController(w)
	if !reset {
		_ = rc.Flush()
	}
	conn, _, err := rc.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // e.g. HTTP/2: the server resets the stream instead
	}
	if tc, ok := conn.(*net.TCPConn); ok && reset {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}
