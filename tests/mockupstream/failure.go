package mockupstream

import (
	"errors"
	"net"
	"net/http"
	"time"
)

// Failure is a failure mode the Server injects into every request (see SetFailure), or
// into one deployment's (see SetDeploymentFailure).
type Failure int

// The failure modes.
const (
	// FailNone answers normally.
	FailNone Failure = iota
	// Fail500 answers 500 with an OpenAI server_error body (an Anthropic api_error body
	// on /v1/messages).
	Fail500
	// Fail429 answers 429 with "Retry-After: 1" and an OpenAI rate-limit body (an
	// Anthropic rate_limit_error body on /v1/messages).
	Fail429
	// FailSlow waits Options.SlowDelay, or until the client gives up, then answers normally.
	FailSlow
	// FailReset drops the TCP connection with a reset before writing anything.
	FailReset
	// FailCutStream sends the first two chunks of a stream, then closes the connection
	// without "data: [DONE]". On /v1/messages it closes the connection right after the
	// first content_block_delta, so no message_stop is sent. A non-streaming answer is
	// cut after half its body.
	FailCutStream
	// Fail529 answers Anthropic's 529 with an overloaded_error body on /v1/messages, and
	// 529 with an OpenAI server_error body on the other endpoints.
	Fail529
	// FailHang never answers: it holds the request until the client gives up or the
	// Server is closed (see Server.Close), when it drops the connection.
	FailHang
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
	case Fail529:
		return "Fail529"
	case FailHang:
		return "FailHang"
	}
	return "Failure(?)"
}

// errDropped reports that the response was already dealt with (the connection was
// dropped or the client went away), so nothing is left to write.
var errDropped = errors.New("connection dropped")

// inject applies the failure modes that happen before an answer starts, with errors in
// the endpoint's dialect.
func (s *Server) inject(w http.ResponseWriter, r *http.Request, f Failure, d dialect) error {
	switch f {
	case Fail500:
		if d == anthropicDialect {
			return &anthropicError{Status: http.StatusInternalServerError, Type: "api_error", Message: "Internal server error (injected by the mock upstream)."}
		}
		return errServer()
	case Fail429:
		w.Header().Set("Retry-After", "1")
		if d == anthropicDialect {
			return &anthropicError{Status: http.StatusTooManyRequests, Type: "rate_limit_error", Message: "Rate limit reached (injected by the mock upstream)."}
		}
		return errRateLimited()
	case Fail529:
		if d == anthropicDialect {
			return &anthropicError{Status: StatusOverloaded, Type: "overloaded_error", Message: "Overloaded (injected by the mock upstream)."}
		}
		return &apiError{Status: StatusOverloaded, Message: "The server is overloaded (injected by the mock upstream).", Type: "server_error"}
	case FailSlow:
		t := time.NewTimer(s.opts.SlowDelay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return errDropped
		}
	case FailHang:
		select {
		case <-r.Context().Done():
		case <-s.closed:
			dropConnection(w, true)
		}
		return errDropped
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
