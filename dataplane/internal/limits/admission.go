package limits

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/portcullis-gw/portcullis/shared/natsnames"
)

// Limit kinds, as OpenAI names them in a 429's error type.
const (
	KindRequests    = "requests"
	KindTokens      = "tokens"
	KindConcurrency = "concurrency"
)

// Denied is the error of a request refused by a limit.
type Denied struct {
	Kind       string // KindRequests, KindTokens or KindConcurrency
	Limit      int64
	RetryAfter time.Duration // until the window frees up, or a short hint for concurrency
	// TooLarge marks a token reservation larger than the whole budget: waiting
	// does not help.
	TooLarge bool
	// Status is the client's request and token windows when it was refused.
	Status Status
}

func (d *Denied) Error() string {
	if d.TooLarge {
		return fmt.Sprintf("request needs more %s than the limit of %d", d.Kind, d.Limit)
	}
	return fmt.Sprintf("%s limit of %d reached", d.Kind, d.Limit)
}

// Limits are one client's effective limits; zero means unlimited.
type Limits struct {
	RequestsPerMinute     int64
	TokensPerHour         int64
	MaxConcurrentRequests int64
}

// Window is what the x-ratelimit-* headers report of one window. A zero Limit
// means the client has no such limit.
type Window struct {
	Limit, Remaining int64
	Reset            time.Duration
}

// Status is a client's request and token windows.
type Status struct {
	Requests, Tokens Window
}

// admitTimeoutFactor bounds a whole admission at this many KV operation timeouts.
const admitTimeoutFactor = 4

// Admit takes a concurrency slot, then one request of the minute window, then
// tokens of the hour window, for client under lim. On success the caller must call
// the Ticket's Finish exactly once when the request is over. A refusal is a
// *Denied; unreachable counters under fail_closed give an error wrapping
// ErrUnavailable.
func (l *Limiter) Admit(ctx context.Context, client string, lim Limits, tokens int64) (*Ticket, error) {
	t := &Ticket{l: l}
	if lim.RequestsPerMinute <= 0 && lim.TokensPerHour <= 0 && lim.MaxConcurrentRequests <= 0 {
		return t, nil
	}
	st := l.state(client)
	t.st = st
	now := l.now()
	if lim.TokensPerHour > 0 && tokens > lim.TokensPerHour {
		return nil, l.deny(client, st, now, lim, &Denied{Kind: KindTokens, Limit: lim.TokensPerHour, TooLarge: true})
	}
	// A lease serves the requests queued behind it too, and a client going away is
	// not NATS going away: the client's cancellation does not end the KV work. Each
	// KV operation is bounded by OpTimeout from when it starts (counterStore); the
	// whole admission, queueing behind other requests of the client included, by
	// admitTimeoutFactor of it, so that a busy counter is not mistaken for an
	// unreachable one.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), admitTimeoutFactor*l.o.OpTimeout)
	defer cancel()
	if lim.MaxConcurrentRequests > 0 {
		g, err := st.conc.acquire(ctx, l, now, lim.MaxConcurrentRequests)
		if err != nil {
			return nil, l.deny(client, st, now, lim, err)
		}
		t.conc, t.hasConc = g, true
	}
	if lim.RequestsPerMinute > 0 {
		g, err := st.rpm.take(ctx, l, now, 1, lim.RequestsPerMinute)
		if err != nil {
			t.release()
			return nil, l.deny(client, st, now, lim, err)
		}
		t.rpm, t.hasRPM = g, true
	}
	if lim.TokensPerHour > 0 && tokens > 0 {
		g, err := st.tph.take(ctx, l, now, tokens, lim.TokensPerHour)
		if err != nil {
			if t.hasRPM {
				st.rpm.refund(l, t.rpm, 1) // a request refused for tokens is not counted
			}
			t.release()
			return nil, l.deny(client, st, now, lim, err)
		}
		t.tph, t.reserved = g, tokens
	}
	t.Status = st.status(now, lim)
	l.metrics.admit(client)
	if t.rpm.owed || t.tph.owed || t.conc.owed {
		l.metrics.failOpen.Inc()
	}
	return t, nil
}

func (l *Limiter) deny(client string, st *clientState, now time.Time, lim Limits, err error) error {
	var d *Denied
	if errors.As(err, &d) {
		d.Status = st.status(now, lim)
		l.metrics.deny(client, d.Kind)
		return d
	}
	l.metrics.deny(client, "unavailable")
	if !errors.Is(err, ErrUnavailable) {
		err = unavailable(err)
	}
	return err
}

// Ticket is one admitted request's hold on the limits.
type Ticket struct {
	l        *Limiter
	st       *clientState
	conc     slotGrant
	hasConc  bool
	rpm, tph grant
	hasRPM   bool
	reserved int64
	finished atomic.Bool

	// Status is the client's windows after the admission, for the response headers.
	Status Status
}

// Reserved is the number of tokens the admission reserved.
func (t *Ticket) Reserved() int64 { return t.reserved }

// Finish settles the token reservation to used (the tokens the request actually
// consumed) and releases the concurrency slot. Unused tokens go back to the
// window; tokens beyond the reservation are charged to it. Later calls do nothing.
func (t *Ticket) Finish(used int64) {
	if t == nil || t.st == nil || !t.finished.CompareAndSwap(false, true) {
		return
	}
	if t.reserved > 0 {
		switch diff := t.reserved - max(0, used); {
		case diff > 0:
			t.st.tph.refund(t.l, t.tph, diff)
		case diff < 0:
			t.st.tph.charge(t.l, t.tph, -diff)
		}
	}
	t.release()
}

func (t *Ticket) release() {
	if t.hasConc {
		t.hasConc = false
		t.st.conc.release(t.l, t.conc)
	}
}

// grant records which window an admission was taken from, and whether it was
// counted as fail_open debt instead of from a lease.
type grant struct {
	start time.Time
	owed  bool
}

func (l *Limiter) state(client string) *clientState {
	if v, ok := l.clients.Load(client); ok {
		return v.(*clientState)
	}
	k := natsnames.LimitsClientKey(client)
	v, _ := l.clients.LoadOrStore(client, &clientState{
		rpm:  newWindow(KindRequests, time.Minute, k),
		tph:  newWindow(KindTokens, time.Hour, k),
		conc: newSlots(k),
	})
	return v.(*clientState)
}

func (st *clientState) status(now time.Time, lim Limits) Status {
	var s Status
	if lim.RequestsPerMinute > 0 {
		s.Requests = st.rpm.status(now, lim.RequestsPerMinute)
	}
	if lim.TokensPerHour > 0 {
		s.Tokens = st.tph.status(now, lim.TokensPerHour)
	}
	return s
}

// leaseSize is how much to lease when need more units are wanted and remaining are
// left: at least need, at most remaining, growing with streak but never beyond a
// 1/(tightFactor·workers) share of what is left.
func leaseSize(remaining, need, workers, streak int64) int64 {
	fair := remaining / (tightFactor * max(1, workers))
	return min(max(need, min(fair, streak)), remaining)
}

// FormatReset renders a time to reset the way OpenAI's x-ratelimit-reset-* headers
// do: "1s", "6m0s", "20ms".
func FormatReset(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}
