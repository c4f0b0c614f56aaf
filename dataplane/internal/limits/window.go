package limits

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/portcullis-gw/portcullis/shared/natsnames"
)

// window is one client's budget of one kind (requests or tokens) in the current
// fixed UTC window. The global counter in PC_LIMITS holds how much of the window's
// budget all workers together have leased; this worker spends its lease locally and
// only goes to the counter when the lease runs out. mu guards every field below it;
// it is held across the KV operations of one lease, so a burst of requests on this
// worker waits for one lease instead of racing for many.
type window struct {
	kind   string        // KindRequests or KindTokens
	period time.Duration // time.Minute or time.Hour
	prefix string        // KV key prefix: "rpm.<client>." or "tph.<client>."

	mu         sync.Mutex
	start      time.Time // start of the window the fields below belong to
	limit      int64     // the limit the local lease was taken under
	local      int64     // leased from the global counter and not yet spent
	known      int64     // the global counter as of this worker's last read or write
	rev        uint64    // the revision known was read or written at
	fresh      bool      // known and rev may be used for a compare-and-swap
	syncedAt   time.Time // when known was last read or written
	streak     int64     // size of the next lease while far from the limit
	lastUse    time.Time // when local last changed
	debt       int64     // fail_open: units admitted without the counter, still to add to it
	spentLocal int64     // fail_open: units admitted without the counter in this window
	returning  bool      // an asynchronous give-back is scheduled
}

func newWindow(kind string, period time.Duration, client string) *window {
	p := natsnames.LimitsRequestsPrefix
	if kind == KindTokens {
		p = natsnames.LimitsTokensPrefix
	}
	return &window{kind: kind, period: period, prefix: p + client + "."}
}

func (w *window) key() string { return w.prefix + strconv.FormatInt(w.start.Unix(), 10) }

// ttl is how long a window's key outlives its last write: past the window's end,
// so no write can land on an expired key while the window is current.
func (w *window) ttl() time.Duration { return 2 * w.period }

// roll moves the state to the window containing now and to limit. w.mu is held.
func (w *window) roll(ctx context.Context, l *Limiter, now time.Time, limit int64) {
	start := now.Truncate(w.period)
	if !start.Equal(w.start) {
		// A new window: whatever was left of the old one's lease or debt ends with it.
		w.start, w.limit = start, limit
		w.local, w.known, w.streak, w.debt, w.spentLocal = 0, 0, 0, 0, 0
		w.rev, w.fresh, w.syncedAt = 0, true, time.Time{} // a new window's key has never been written: try revision 0 first
		return
	}
	if limit != w.limit {
		if limit < w.limit && w.local > 0 {
			w.giveBack(ctx, l) // a lowered limit must not be spent from a lease taken under the old one
			w.local = 0        // even if the give-back failed
		}
		w.limit = limit
		w.streak = 0
	}
}

// take spends n units of the window's budget under limit, leasing from the global
// counter when the local lease does not cover n. w.mu must not be held.
func (w *window) take(ctx context.Context, l *Limiter, now time.Time, n, limit int64) (grant, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.roll(ctx, l, now, limit)
	g := grant{start: w.start}
	if w.local >= n {
		w.local -= n
		w.lastUse = now
		return g, nil
	}
	if err := l.unreachable(); err != nil {
		return w.takeUnreachable(l, g, n, limit, err)
	}
	readNow := false
	for attempt := 0; attempt < maxCASAttempts; attempt++ {
		if !w.fresh {
			if err := w.read(ctx, l); err != nil {
				return w.takeUnreachable(l, g, n, limit, err)
			}
			readNow = true
		}
		need := n - w.local
		remaining := limit - w.known
		if remaining < need {
			// Others may have given budget back since our last look; look again,
			// but not for every refused request of a client hammering at its
			// limit, which would turn each refusal into a KV read.
			if !readNow && now.Sub(w.syncedAt) >= recheckAfter {
				w.fresh = false
				continue
			}
			return g, w.denial(now, limit)
		}
		lease := leaseSize(remaining, need, l.liveWorkers(), w.streak)
		rev, err := l.counters().cas(ctx, w.key(), strconv.AppendInt(nil, w.known+lease, 10), w.rev, w.ttl())
		if err == errConflict {
			w.fresh = false
			continue
		}
		if err != nil {
			w.fresh = false
			return w.takeUnreachable(l, g, n, limit, err)
		}
		l.metrics.leases.WithLabelValues(w.kind).Inc()
		w.known += lease
		w.rev, w.syncedAt = rev, now
		w.local += lease - n
		w.streak = min(lease*2, maxStreak)
		w.lastUse = now
		return g, nil
	}
	return g, errContention
}

// read refreshes known and rev from the global counter. w.mu is held.
func (w *window) read(ctx context.Context, l *Limiter) error {
	data, rev, err := l.counters().get(ctx, w.key())
	if err != nil {
		return err
	}
	n, err := parseCount(data)
	if err != nil {
		return err
	}
	w.known, w.rev, w.fresh, w.syncedAt = n, rev, true, l.now()
	return nil
}

// takeUnreachable applies the fail policy when the global counter cannot be
// reached. w.mu is held.
func (w *window) takeUnreachable(l *Limiter, g grant, n, limit int64, cause error) (grant, error) {
	l.markUnreachable(cause)
	if !l.failOpen {
		return g, unavailable(cause)
	}
	if w.spentLocal+n > limit { // fail_open still holds each worker to the limit
		return g, w.denial(l.now(), limit)
	}
	w.spentLocal += n
	w.debt += n
	g.owed = true
	return g, nil
}

func (w *window) denial(now time.Time, limit int64) *Denied {
	return &Denied{Kind: w.kind, Limit: limit, RetryAfter: w.start.Add(w.period).Sub(now)}
}

// refund gives n units of an admission in window start back to the local lease (or,
// for an admission counted as fail_open debt, takes them off the debt).
func (w *window) refund(l *Limiter, g grant, n int64) {
	if n <= 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !g.start.Equal(w.start) {
		return // that window is over
	}
	if g.owed {
		w.debt = max(0, w.debt-n)
		w.spentLocal = max(0, w.spentLocal-n)
		return
	}
	w.local += n
	w.lastUse = l.now()
	if w.tight(l) {
		w.scheduleGiveBack(l)
	}
}

// charge spends n more units of window start than were admitted (a request that
// used more tokens than it reserved). It never refuses: the bound on this
// overshoot is documented in docs/limits.md.
func (w *window) charge(l *Limiter, g grant, n int64) {
	if n <= 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !g.start.Equal(w.start) {
		return
	}
	if w.local >= n {
		w.local -= n
		return
	}
	w.debt += n - w.local
	w.local = 0
	l.kick() // the sweeper adds the debt to the counter
}

// tight reports whether the window is so near its limit that budget held locally
// could be what another worker needs. w.mu is held.
func (w *window) tight(l *Limiter) bool {
	return w.limit-w.known < tightFactor*l.liveWorkers()
}

// scheduleGiveBack returns the local lease to the counter in the background. w.mu is held.
func (w *window) scheduleGiveBack(l *Limiter) {
	if w.returning {
		return
	}
	w.returning = true
	l.async(func(ctx context.Context) {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.returning = false
		w.giveBack(ctx, l)
	})
}

// giveBack returns the local lease to the global counter. w.mu is held. On failure
// the lease stays local and the sweeper tries again.
func (w *window) giveBack(ctx context.Context, l *Limiter) {
	if w.local > 0 && w.update(ctx, l, func(known int64) int64 { return max(0, known-w.local) }) == nil {
		w.local, w.streak = 0, 0
	}
}

// payDebt adds units admitted without the counter (fail_open, or tokens used beyond
// a reservation) to the global counter, regardless of the limit. w.mu is held.
func (w *window) payDebt(ctx context.Context, l *Limiter) {
	if w.debt > 0 && w.update(ctx, l, func(known int64) int64 { return known + w.debt }) == nil {
		w.debt = 0
	}
}

// update compare-and-swaps the global counter to next(its value), reading it again
// after a conflict. w.mu is held.
func (w *window) update(ctx context.Context, l *Limiter, next func(known int64) int64) error {
	for attempt := 0; attempt < maxCASAttempts; attempt++ {
		if err := l.unreachable(); err != nil {
			return err
		}
		if !w.fresh {
			if err := w.read(ctx, l); err != nil {
				return err
			}
		}
		v := next(w.known)
		rev, err := l.counters().cas(ctx, w.key(), strconv.AppendInt(nil, v, 10), w.rev, w.ttl())
		if err != nil {
			w.fresh = false
			if err == errConflict {
				continue
			}
			return err
		}
		w.known, w.rev, w.syncedAt = v, rev, l.now()
		return nil
	}
	return errContention
}

// sweep gives back a lease idle since before idleBefore, pays debt, and reports
// whether the window's state is finished with (over and settled).
func (w *window) sweep(ctx context.Context, l *Limiter, now, idleBefore time.Time) (done bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if now.Sub(w.start) >= w.period {
		return true // over: the counter key expires by itself
	}
	if w.debt > 0 {
		w.payDebt(ctx, l)
	}
	if w.local > 0 && w.lastUse.Before(idleBefore) {
		w.giveBack(ctx, l)
	}
	return false
}

// status reports the window's limit, remaining budget and time to reset as this
// worker knows them.
func (w *window) status(now time.Time, limit int64) Window {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !now.Truncate(w.period).Equal(w.start) {
		return Window{Limit: limit, Remaining: limit, Reset: now.Truncate(w.period).Add(w.period).Sub(now)}
	}
	return Window{
		Limit:     limit,
		Remaining: max(0, min(limit, limit-w.known+w.local-w.debt)),
		Reset:     w.start.Add(w.period).Sub(now),
	}
}
