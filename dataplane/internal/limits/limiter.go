// Package limits enforces each client's requests per minute, tokens per hour and
// concurrent requests globally and exactly, across every worker in every region
// (docs/design.md §5, docs/limits.md).
//
// The global counters live in the PC_LIMITS KV bucket and are only ever changed by
// compare-and-swap on a key's revision, so concurrent writers cannot lose each
// other's updates even when a read came from a lagging replica. A worker does not
// touch the counter for every request: it leases a slice of a window's budget and
// spends it locally. Lease sizes double while a window is far from its limit and
// shrink to single units near it (never more than a 1/(4·workers) share of what is
// left), and budget a worker leased but did not use goes back to the counter when it
// sits idle, or at once when the window is tight. The sum of all leases never
// exceeds the limit, so neither does the number of admitted requests.
//
// Concurrency slots are attributed to the holding worker in the counter. Workers
// keep a heartbeat with a TTL in PC_WORKERS; a worker that finds the slots full
// drops the holdings of workers whose heartbeat has expired.
package limits

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis-gw/portcullis/shared/natsnames"
)

// Fail policies: what happens while the global counters cannot be reached.
const (
	FailClosed = "fail_closed" // refuse with 503 limits_unavailable
	FailOpen   = "fail_open"   // admit, count locally (each worker capped at the limit), reconcile later
)

// Defaults of Options.
const (
	DefaultOpTimeout  = 2 * time.Second
	DefaultIdleReturn = time.Second
)

const (
	// tightFactor: a lease is at most a 1/(tightFactor·workers) share of what is
	// left of a budget, and a budget with less left than tightFactor·workers units
	// is tight: leases are single units and unused budget goes back at once.
	tightFactor = 4
	// maxStreak caps lease growth.
	maxStreak = 1 << 40
	// maxCASAttempts bounds the compare-and-swap retries of one operation.
	maxCASAttempts = 64
	// recheckAfter: a window found exhausted is read again for a later request
	// only this long after its last read or write, so that a client hammering at
	// its limit does not cost a KV read per refusal. Budget given back by another
	// worker is seen at most this late.
	recheckAfter = 100 * time.Millisecond
	// concurrencyRetryAfter is the Retry-After hint of a concurrency denial.
	concurrencyRetryAfter = time.Second
)

var (
	// ErrUnavailable reports that the global counters could not be reached and the
	// fail policy is fail_closed.
	ErrUnavailable = errors.New("global limit counters unavailable")
	errNATSDown    = errors.New("not connected to NATS")
	errNotReady    = errors.New("the limit buckets are not open yet")
	errContention  = errors.New("too many concurrent updates to one counter")
)

func unavailable(cause error) error { return fmt.Errorf("%w: %w", ErrUnavailable, cause) }

// Options configures a Limiter.
type Options struct {
	JetStream  jetstream.JetStream
	Connected  func() bool // whether the NATS connection is up; checked before any KV operation
	WorkerID   string
	Region     string
	FailPolicy string        // FailClosed (default) or FailOpen
	OpTimeout  time.Duration // bound of one KV operation
	IdleReturn time.Duration // leased budget unused this long goes back to the counter
	Now        func() time.Time
	Log        *slog.Logger
	Registerer prometheus.Registerer
	// ClientLabels labels portcullis_limits_admitted_total and _denied_total with
	// the client id. Off (the default), they count every client together, so that
	// the metrics do not list the clients and their traffic.
	ClientLabels bool
}

// Limiter admits requests against global limits. It is safe for concurrent use.
// Run must be running for it to reach the counters; until then (and whenever NATS
// is unreachable) the fail policy applies.
type Limiter struct {
	o        Options
	failOpen bool
	now      func() time.Time
	log      *slog.Logger
	metrics  *metrics
	workers  *workers

	store   atomic.Pointer[counterStore] // nil until Run has opened the buckets
	clients sync.Map                     // client id → *clientState
	down    atomic.Bool                  // the counters were found unreachable and have not been reached since
	kickC   chan struct{}

	asyncMu sync.Mutex // guards runCtx and closed
	runCtx  context.Context
	closed  bool
	asyncWG sync.WaitGroup
}

type clientState struct {
	rpm, tph *window
	conc     *slots
}

// New returns a Limiter; call Run to connect it to the counters.
func New(o Options) (*Limiter, error) {
	if o.FailPolicy == "" {
		o.FailPolicy = FailClosed
	}
	if o.FailPolicy != FailClosed && o.FailPolicy != FailOpen {
		return nil, fmt.Errorf("fail policy %q: must be %s or %s", o.FailPolicy, FailClosed, FailOpen)
	}
	if o.OpTimeout <= 0 {
		o.OpTimeout = DefaultOpTimeout
	}
	if o.IdleReturn <= 0 {
		o.IdleReturn = DefaultIdleReturn
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	m, err := newMetrics(o.Registerer, o.ClientLabels)
	if err != nil {
		return nil, fmt.Errorf("limits metrics: %w", err)
	}
	w, err := newWorkers(o.WorkerID, o.Region, o.Now)
	if err != nil {
		return nil, err
	}
	l := &Limiter{o: o, failOpen: o.FailPolicy == FailOpen, now: o.Now, log: o.Log, metrics: m, workers: w,
		kickC: make(chan struct{}, 1)}
	l.down.Store(true)
	return l, nil
}

// Ready reports whether the counters have been opened and were reachable at the
// last attempt.
func (l *Limiter) Ready() bool { return l.store.Load() != nil && !l.down.Load() }

// counters is the counter store; callers check reachable first.
func (l *Limiter) counters() *counterStore { return l.store.Load() }

func (l *Limiter) liveWorkers() int64 { return l.workers.count.Load() }

// reachable reports whether a KV operation is worth trying.
func (l *Limiter) reachable() bool { return l.unreachable() == nil }

// unreachable says why a KV operation is not worth trying, or nil if it is.
func (l *Limiter) unreachable() error {
	switch {
	case l.store.Load() == nil:
		return errNotReady
	case l.o.Connected != nil && !l.o.Connected():
		return errNATSDown
	}
	return nil
}

func (l *Limiter) markUnreachable(cause error) {
	l.metrics.available.Set(0)
	if !l.down.Swap(true) {
		l.log.Warn("global limit counters unreachable; applying the fail policy", "fail_policy", l.o.FailPolicy, "err", cause)
	}
}

func (l *Limiter) markReachable() {
	l.metrics.available.Set(1)
	if l.down.Swap(false) {
		l.log.Info("global limit counters reachable")
	}
}

// kick wakes the sweeper.
func (l *Limiter) kick() {
	select {
	case l.kickC <- struct{}{}:
	default:
	}
}

// async runs fn in the background with a bounded context, unless Run has ended.
func (l *Limiter) async(fn func(ctx context.Context)) {
	l.asyncMu.Lock()
	defer l.asyncMu.Unlock()
	if l.closed || l.runCtx == nil {
		return
	}
	ctx := l.runCtx
	l.asyncWG.Go(func() {
		ctx, cancel := context.WithTimeout(ctx, l.o.OpTimeout)
		defer cancel()
		fn(ctx)
	})
}

// Run opens the PC_LIMITS and PC_WORKERS buckets (waiting for the control plane to
// create them), keeps the heartbeat, gives idle leases back and pays fail_open
// debt, until ctx is done. On the way out it gives back what it holds and removes
// its heartbeat.
func (l *Limiter) Run(ctx context.Context) error {
	l.asyncMu.Lock()
	l.runCtx = ctx
	l.asyncMu.Unlock()
	defer func() {
		l.asyncMu.Lock()
		l.closed = true
		l.asyncMu.Unlock()
		l.asyncWG.Wait()
	}()

	if err := l.open(ctx); err != nil || ctx.Err() != nil {
		return err // stopped before the buckets were there
	}
	beat := time.NewTicker(l.workers.interval())
	defer beat.Stop()
	sweep := time.NewTicker(l.o.IdleReturn / 2)
	defer sweep.Stop()
	l.heartbeat(ctx)
	for {
		select {
		case <-ctx.Done():
			l.shutdown()
			return nil
		case <-beat.C:
			l.heartbeat(ctx)
		case <-sweep.C:
			l.sweep(ctx)
		case <-l.kickC:
			l.sweep(ctx)
		}
	}
}

// open waits for both buckets.
func (l *Limiter) open(ctx context.Context) error {
	logged := false
	for {
		kv, ws, st, err := l.tryOpen(ctx)
		if err == nil {
			status, err := kv.Status(ctx)
			if err == nil {
				l.workers.open(kv, ws, status.TTL())
				if status.TTL() <= 0 {
					l.log.Error("PC_WORKERS has no TTL: crashed workers' slots are never reclaimed", "bucket", natsnames.WorkersBucket)
					l.workers.open(kv, ws, 10*time.Second)
				}
				l.store.Store(&counterStore{js: l.o.JetStream, stream: st, ops: l.metrics.kv, timeout: l.o.OpTimeout})
				return nil
			}
		}
		if !logged {
			l.log.Warn("waiting for the limit buckets", "buckets", []string{natsnames.LimitsBucket, natsnames.WorkersBucket}, "err", err)
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// tryOpen opens PC_WORKERS (as a bucket and as a stream) and PC_LIMITS' stream.
func (l *Limiter) tryOpen(ctx context.Context) (jetstream.KeyValue, jetstream.Stream, jetstream.Stream, error) {
	ctx, cancel := context.WithTimeout(ctx, l.o.OpTimeout)
	defer cancel()
	kv, err := l.o.JetStream.KeyValue(ctx, natsnames.WorkersBucket)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("open %s: %w", natsnames.WorkersBucket, err)
	}
	ws, err := l.o.JetStream.Stream(ctx, natsnames.KVStream(natsnames.WorkersBucket))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("open %s: %w", natsnames.WorkersBucket, err)
	}
	st, err := l.o.JetStream.Stream(ctx, natsnames.KVStream(natsnames.LimitsBucket))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("open %s: %w", natsnames.LimitsBucket, err)
	}
	return kv, ws, st, nil
}

func (l *Limiter) heartbeat(ctx context.Context) {
	if err := l.unreachable(); err != nil {
		l.markUnreachable(err)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, l.o.OpTimeout)
	defer cancel()
	if err := l.workers.beat(ctx); err != nil {
		l.markUnreachable(err)
		return
	}
	if err := l.workers.refresh(ctx); err != nil {
		l.log.Debug("count live workers", "err", err)
	}
	l.metrics.workers.Set(float64(l.liveWorkers()))
	l.markReachable()
}

func (l *Limiter) sweep(ctx context.Context) {
	if !l.reachable() {
		return
	}
	now := l.now()
	idleBefore := now.Add(-l.o.IdleReturn)
	l.clients.Range(func(_, v any) bool {
		st := v.(*clientState)
		opCtx, cancel := context.WithTimeout(ctx, l.o.OpTimeout)
		defer cancel()
		st.rpm.sweep(opCtx, l, now, idleBefore)
		st.tph.sweep(opCtx, l, now, idleBefore)
		st.conc.sweep(opCtx, l, idleBefore)
		return ctx.Err() == nil
	})
}

// shutdown gives back every lease and idle slot and removes the heartbeat, so a
// clean stop strands no budget.
func (l *Limiter) shutdown() {
	if !l.reachable() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.o.OpTimeout)
	defer cancel()
	far := l.now().Add(time.Hour) // everything counts as idle
	l.clients.Range(func(_, v any) bool {
		st := v.(*clientState)
		st.rpm.sweep(ctx, l, l.now(), far)
		st.tph.sweep(ctx, l, l.now(), far)
		st.conc.giveBackAll(ctx, l)
		return ctx.Err() == nil
	})
	l.workers.remove(ctx)
}
