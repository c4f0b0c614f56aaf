// Package policycache keeps the data plane's view of the policy: it watches the
// snapshot key of the PC_POLICY KV bucket, verifies each new snapshot's signature,
// decodes and compiles it off to the side, and swaps it in with an atomic pointer. A
// snapshot that is unsigned, not signed by a configured key, cannot be decoded, or
// whose schema version this build does not know, is rejected (logged and counted) and
// the last good one keeps serving; a snapshot whose version is not newer than the
// current one is ignored.
package policycache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis-gw/portcullis/dataplane/internal/upstream"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/policy"
	"github.com/portcullis-gw/portcullis/shared/signing"
)

// Options configures a Cache.
type Options struct {
	// JetStream is the connection to watch the policy bucket on.
	JetStream jetstream.JetStream
	// Region is the worker's region; routes in it are preferred.
	Region string
	// Log receives snapshot events.
	Log *slog.Logger
	// Registerer receives the cache's metrics.
	Registerer prometheus.Registerer
	// Upstream are the settings every deployment's upstream target is built with.
	Upstream upstream.Options
	// Verifier holds the public keys of the control plane's policy signing keys: a
	// snapshot none of them signed is never applied. Required.
	Verifier *signing.Verifier
	// RetryMin and RetryMax bound the backoff while the bucket is missing or the
	// watch breaks; they default to 100ms and 5s.
	RetryMin, RetryMax time.Duration
	// PollInterval is how often the bucket is asked for a new revision; it
	// defaults to DefaultPollInterval.
	PollInterval time.Duration
}

// DefaultPollInterval is how often a data plane looks for a new policy revision.
// A look is one small stream-info request; the snapshot is read only when the
// revision changed.
const DefaultPollInterval = 250 * time.Millisecond

// Cache holds the current compiled policy. Current is safe for concurrent use; Run
// must be called once.
type Cache struct {
	opts     Options
	log      *slog.Logger
	current  atomic.Pointer[Policy]
	version  prometheus.Gauge
	rejected *prometheus.CounterVec
	fresh    freshness // when the policy in use was last confirmed current (freshness.go)

	onApplyMu sync.Mutex
	onApply   func(*Policy) // told of each policy applied; onApplyMu guards it
}

// OnApply has fn told of each policy the cache applies from now on, and at once of
// the one in use, if any. fn runs on the cache's goroutine and must not block long.
func (c *Cache) OnApply(fn func(*Policy)) {
	c.onApplyMu.Lock()
	defer c.onApplyMu.Unlock()
	c.onApply = fn
	if p := c.current.Load(); p != nil {
		fn(p)
	}
}

// New returns a Cache that has no policy until Run has applied the first snapshot.
func New(o Options) (*Cache, error) {
	if o.RetryMin <= 0 {
		o.RetryMin = 100 * time.Millisecond
	}
	if o.RetryMax < o.RetryMin {
		o.RetryMax = max(5*time.Second, o.RetryMin)
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	c := &Cache{
		opts: o,
		log:  o.Log.With("component", "policycache"),
		version: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "portcullis_dataplane", Name: "policy_version",
			Help: "Version of the policy snapshot in use; 0 before the first one.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "portcullis_dataplane", Name: "policy_snapshots_rejected_total",
			Help: "Policy snapshots not applied, by reason (unsigned; bad_signature: not signed by a configured key; invalid: undecodable or unknown schema; stale: older than the one in use).",
		}, []string{"reason"}),
	}
	if o.Verifier == nil {
		return nil, errors.New("policy cache: no public keys to verify snapshots with")
	}
	for _, r := range []string{"unsigned", "bad_signature", "invalid", "stale"} {
		c.rejected.WithLabelValues(r)
	}
	if err := o.Registerer.Register(c.version); err != nil {
		return nil, fmt.Errorf("register policy metrics: %w", err)
	}
	if err := o.Registerer.Register(c.rejected); err != nil {
		return nil, fmt.Errorf("register policy metrics: %w", err)
	}
	if err := o.Registerer.Register(newAgeCollector(c)); err != nil {
		return nil, fmt.Errorf("register policy metrics: %w", err)
	}
	return c, nil
}

// Current returns the policy in use, or nil before the first snapshot.
func (c *Cache) Current() *Policy { return c.current.Load() }

// Version returns the version of the policy in use, or 0 before the first snapshot.
func (c *Cache) Version() int64 {
	if p := c.current.Load(); p != nil {
		return p.Version
	}
	return 0
}

// Run watches the policy bucket until ctx is done, then returns nil. It waits, with
// backoff, for the bucket to exist (it never creates it), and re-establishes the
// watch whenever it breaks, and at once after a NATS reconnect.
func (c *Cache) Run(ctx context.Context) error {
	defer func() {
		if p := c.current.Load(); p != nil {
			p.closeIdle()
		}
	}()
	nc := c.opts.JetStream.Conn()
	reconnected := nc.StatusChanged(nats.CONNECTED)
	defer nc.RemoveStatusListener(reconnected)

	delay := c.opts.RetryMin
	waitingLogged := false
	for {
		err := c.watch(ctx, reconnected, func() { delay = c.opts.RetryMin; waitingLogged = false })
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case errors.Is(err, errReconnected):
			c.log.Info("nats reconnected; re-establishing the policy watch")
			continue
		case errors.Is(err, errStatusClosed):
			reconnected = nil // the connection is closed for good; keep retrying until ctx ends
		case errors.Is(err, jetstream.ErrBucketNotFound) && !waitingLogged:
			c.log.Info("waiting for the policy bucket to be created by the control plane", "bucket", natsnames.PolicyBucket)
			waitingLogged = true
		case errors.Is(err, jetstream.ErrBucketNotFound):
		default:
			c.log.Warn("policy watch interrupted; retrying", "err", err, "retry_in", delay)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(2*delay, c.opts.RetryMax)
	}
}

var (
	errReconnected  = errors.New("nats reconnected")
	errStatusClosed = errors.New("nats connection closed")
)

// watch opens the bucket and applies each new revision of the snapshot key until a
// read fails or the connection reports a reconnect. connected is called once the
// first look succeeded. It looks at the stream's last sequence every PollInterval,
// and at once when the control plane writes the snapshot key (a plain subscription
// to its subject tells), and reads the snapshot when the sequence changed. A data
// plane's NATS identity may read streams but create no consumer (docs/nats.md: a
// consumer's deliver subject would let it have the server publish anywhere), so it
// cannot use a KV watch.
func (c *Cache) watch(ctx context.Context, reconnected <-chan nats.Status, connected func()) error {
	kv, err := c.opts.JetStream.KeyValue(ctx, natsnames.PolicyBucket)
	if err != nil {
		return fmt.Errorf("open bucket %s: %w", natsnames.PolicyBucket, err)
	}
	stream, err := c.opts.JetStream.Stream(ctx, natsnames.KVStream(natsnames.PolicyBucket))
	if err != nil {
		return fmt.Errorf("open bucket %s: %w", natsnames.PolicyBucket, err)
	}
	// A write only says "look now": one pending is enough.
	written := make(chan struct{}, 1)
	sub, err := c.opts.JetStream.Conn().Subscribe(natsnames.KVSubject(natsnames.PolicyBucket, natsnames.PolicySnapshotKey), func(*nats.Msg) {
		select {
		case written <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return fmt.Errorf("subscribe to %s/%s: %w", natsnames.PolicyBucket, natsnames.PolicySnapshotKey, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	t := time.NewTicker(c.opts.PollInterval)
	defer t.Stop()
	var seen uint64 // the stream's last sequence at the last read of the snapshot
	for first := true; ; first = false {
		last, err := lastSequence(ctx, stream)
		if err != nil {
			return err
		}
		if last != seen {
			e, err := kv.Get(ctx, natsnames.PolicySnapshotKey)
			switch {
			case errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted):
				if c.current.Load() != nil {
					c.log.Warn("policy snapshot key was deleted; keeping the current policy", "revision", last, "version", c.Version())
				}
			case err != nil:
				return fmt.Errorf("read %s/%s: %w", natsnames.PolicyBucket, natsnames.PolicySnapshotKey, err)
			default:
				c.apply(e)
			}
			seen = last
		} else if c.current.Load() != nil && last == c.fresh.revision.Load() {
			c.fresh.confirm(last)
		}
		if first {
			connected()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case _, ok := <-reconnected:
			if !ok {
				return errStatusClosed
			}
			return errReconnected // look again at once, from a fresh start
		case <-written:
		case <-t.C:
		}
	}
}

// lastSequence is the last sequence of stream, newest first from the server.
func lastSequence(ctx context.Context, stream jetstream.Stream) (uint64, error) {
	info, err := stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("read the state of %s: %w", natsnames.PolicyBucket, err)
	}
	return info.State.LastSeq, nil
}

// apply decodes, compiles and swaps in one KV entry, or rejects it.
func (c *Cache) apply(e jetstream.KeyValueEntry) {
	cur := c.current.Load()
	if e.Operation() != jetstream.KeyValuePut {
		c.log.Warn("policy snapshot key was deleted; keeping the current policy", "revision", e.Revision(), "version", c.Version())
		return
	}
	encoded, keyID, err := policy.Open(e.Value(), c.opts.Verifier)
	if err != nil {
		reason := "bad_signature"
		if errors.Is(err, policy.ErrUnsigned) {
			reason = "unsigned"
		}
		c.rejected.WithLabelValues(reason).Inc()
		c.log.Error("policy snapshot rejected: its signature does not verify; keeping the last good one",
			"revision", e.Revision(), "version", c.Version(), "key_id", keyID, "err", err)
		return
	}
	s, err := policy.Decode(encoded)
	if err != nil {
		c.rejected.WithLabelValues("invalid").Inc()
		c.log.Error("policy snapshot rejected; keeping the last good one", "revision", e.Revision(), "version", c.Version(), "err", err)
		return
	}
	if cur != nil && s.Version <= cur.Version {
		if s.Version == cur.Version { // written again (or replayed to a new watch): still current
			c.fresh.confirm(e.Revision())
		}
		if s.Version < cur.Version {
			c.rejected.WithLabelValues("stale").Inc()
			c.log.Warn("ignoring a policy snapshot older than the one in use", "revision", e.Revision(), "snapshot_version", s.Version, "version", cur.Version)
		}
		return
	}
	p, retired := compile(s, c.opts.Region, cur, c.log, c.opts.Upstream)
	c.onApplyMu.Lock()
	c.current.Store(p)
	if c.onApply != nil {
		c.onApply(p)
	}
	c.onApplyMu.Unlock()
	c.fresh.confirm(e.Revision())
	c.version.Set(float64(p.Version))
	for _, t := range retired {
		t.CloseIdle()
	}
	if k := c.opts.Upstream.Keys; k != nil { // leases of removed deployments end
		keep := make(map[string]bool, len(s.Deployments))
		for _, d := range s.Deployments {
			keep[d.Name] = true
		}
		k.Forget(keep)
	}
	c.log.Info("policy snapshot applied", "version", p.Version, "revision", e.Revision(), "key_id", keyID,
		"clients", len(s.Clients), "deployments", len(s.Deployments), "models", len(s.Models))
}
