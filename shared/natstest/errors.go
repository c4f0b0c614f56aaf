package natstest

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// Errors collects the asynchronous errors NATS sends a connection, so that a test
// can wait for the permission error a refused publish or subscription gets.
type Errors struct{ ch chan error }

// NewErrors returns an empty collection; pass its Handler to the connection.
func NewErrors() *Errors { return &Errors{ch: make(chan error, 64)} }

// Handler is the connection option that collects the errors (beyond 64 waiting,
// the newest are dropped).
func (e *Errors) Handler() nats.Option {
	return nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case e.ch <- err:
		default:
		}
	})
}

// Refused waits up to 5 s for the next error, which must be NATS's permission
// violation naming subject; what says what was tried.
func (e *Errors) Refused(t testing.TB, what, subject string) {
	t.Helper()
	select {
	case err := <-e.ch:
		if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), `"`+subject+`"`) {
			t.Fatalf("%s: %v, want a permission violation on %q", what, err, subject)
		}
		t.Logf("%s: %v", what, err)
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: NATS sent no permission error about %q", what, subject)
	}
}

// None fails if NATS refused anything done on nc so far: it flushes nc first, so the
// server has answered everything sent before.
func (e *Errors) None(t testing.TB, nc *nats.Conn, what string) {
	t.Helper()
	if err := nc.Flush(); err != nil {
		t.Fatalf("%s: flush: %v", what, err)
	}
	select {
	case err := <-e.ch:
		t.Fatalf("%s: %v", what, err)
	default:
	}
}
