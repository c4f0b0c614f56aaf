package publisher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/policy"
	"github.com/portcullis-gw/portcullis/shared/signing"
)

// DefaultInterval is how often the snapshot is republished when nothing asks sooner.
const DefaultInterval = 30 * time.Second

const (
	maxCASAttempts = 16
	publishTimeout = 30 * time.Second
	retryBase      = 500 * time.Millisecond
)

// SnapshotSource builds the current policy snapshot (the store, in production).
type SnapshotSource interface {
	Snapshot(ctx context.Context) (*policy.Snapshot, error)
}

// KV is the part of a JetStream key-value bucket the publisher uses.
type KV interface {
	Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error)
	Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error)
	Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error)
}

var _ KV = jetstream.KeyValue(nil)

// Options tunes a Publisher. Signer is required.
type Options struct {
	Interval time.Duration // republish period; DefaultInterval when zero
	Log      *slog.Logger  // slog.Default() when nil
	// Signer seals every snapshot (policy.Seal). A value in the bucket that the
	// signer's own public key does not verify is not the control plane's: its
	// version is not believed, and it is overwritten.
	Signer *signing.Signer
}

// Publisher publishes policy snapshots. Run owns its only goroutine; Notify and
// Version are safe for concurrent use.
type Publisher struct {
	src      SnapshotSource
	kv       KV
	interval time.Duration
	log      *slog.Logger
	signer   *signing.Signer
	verifier *signing.Verifier // the signer's own public key

	notify  chan struct{}
	version atomic.Int64 // newest version known to be in the bucket; 0 until the first publish

	versionGauge prometheus.Gauge
	sizeGauge    prometheus.Gauge
	results      *prometheus.CounterVec
}

// New returns a publisher of src's snapshots into kv (the PC_POLICY bucket).
func New(src SnapshotSource, kv KV, o Options) *Publisher {
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	verifier, err := signing.ParsePublicKeys(o.Signer.PublicPEM())
	if err != nil {
		panic(err) // the signer's own public key always parses
	}
	return &Publisher{
		src:      src,
		kv:       kv,
		interval: o.Interval,
		log:      o.Log,
		signer:   o.Signer,
		verifier: verifier,
		notify:   make(chan struct{}, 1),
		versionGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "portcullis_controlplane", Name: "policy_version",
			Help: "Newest policy version known to be in the PC_POLICY bucket.",
		}),
		sizeGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "portcullis_controlplane", Name: "policy_snapshot_bytes",
			Help: "Encoded size of the last snapshot this replica wrote.",
		}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "portcullis_controlplane", Name: "policy_publishes_total",
			Help: "Publish attempts by result: written, current (bucket already as new) or error.",
		}, []string{"result"}),
	}
}

// Collectors returns the publisher's metrics, for the caller to register.
func (p *Publisher) Collectors() []prometheus.Collector {
	return []prometheus.Collector{p.versionGauge, p.sizeGauge, p.results}
}

// Notify asks for a publish soon. It never blocks; notifications that arrive while one
// is pending coalesce into one publish.
func (p *Publisher) Notify() {
	select {
	case p.notify <- struct{}{}:
	default:
	}
}

// Version is the newest policy version known to be in the bucket (written by this
// publisher or found there), or 0 before the first successful publish.
func (p *Publisher) Version() int64 { return p.version.Load() }

// Run publishes at once, then after every Notify and every interval, until ctx ends.
// A failed publish is retried with backoff (capped at the interval). Run returns nil
// when ctx is cancelled.
func (p *Publisher) Run(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-p.notify:
		case <-timer.C:
		}
		delay := p.interval
		if err := p.publishLogged(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			failures++
			delay = min(p.interval, retryBase<<min(failures-1, 10))
		} else {
			failures = 0
		}
		timer.Reset(delay)
	}
}

func (p *Publisher) publishLogged(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	res, err := p.Publish(ctx)
	if err != nil {
		p.results.WithLabelValues("error").Inc()
		if ctx.Err() == nil {
			p.log.Error("policy publish failed", "err", err)
		}
		return err
	}
	if res.Wrote {
		p.results.WithLabelValues("written").Inc()
		p.sizeGauge.Set(float64(res.Bytes))
		p.log.Info("policy published", "version", res.Version, "revision", res.Revision, "bytes", res.Bytes)
	} else {
		p.results.WithLabelValues("current").Inc()
		p.log.Debug("policy already current", "version", res.Version, "bucket_version", res.Current)
	}
	return nil
}

// Result describes one Publish.
type Result struct {
	Version  int64  // version of the snapshot built from the source
	Current  int64  // version in the bucket afterwards (>= Version)
	Wrote    bool   // whether this call wrote the bucket
	Revision uint64 // the bucket revision written, when Wrote
	Bytes    int    // encoded size, when Wrote
}

// Publish builds one snapshot and compare-and-swaps it into the bucket unless the
// bucket already holds the same or a newer version. It is safe to call concurrently
// with Run, though Run alone is the usual caller.
func (p *Publisher) Publish(ctx context.Context) (Result, error) {
	snap, err := p.src.Snapshot(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("build snapshot: %w", err)
	}
	if err := snap.Validate(); err != nil {
		return Result{}, fmt.Errorf("snapshot version %d is invalid, not publishing: %w", snap.Version, err)
	}
	encoded, err := policy.Encode(snap)
	if err != nil {
		return Result{}, err
	}
	data := policy.Seal(encoded, p.signer)
	res := Result{Version: snap.Version}
	key := natsnames.PolicySnapshotKey
	for range maxCASAttempts {
		entry, err := p.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			rev, err := p.kv.Create(ctx, key, data)
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue // another replica created it first; compare with theirs
			}
			if err != nil {
				return Result{}, fmt.Errorf("create %s/%s: %w", natsnames.PolicyBucket, key, err)
			}
			return p.wrote(res, rev, len(data)), nil
		case err != nil:
			return Result{}, fmt.Errorf("get %s/%s: %w", natsnames.PolicyBucket, key, err)
		}
		current, ok, why := p.storedVersion(entry.Value())
		if ok && current >= snap.Version {
			res.Current = current
			p.observe(current)
			return res, nil
		}
		if !ok {
			p.log.Warn("policy bucket holds a value that is not a snapshot of this control plane; overwriting it",
				"revision", entry.Revision(), "reason", why)
		}
		rev, err := p.kv.Update(ctx, key, data, entry.Revision())
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue // someone wrote in between; read again
		}
		if err != nil {
			return Result{}, fmt.Errorf("update %s/%s: %w", natsnames.PolicyBucket, key, err)
		}
		return p.wrote(res, rev, len(data)), nil
	}
	return Result{}, fmt.Errorf("publish version %d: still conflicting after %d attempts", snap.Version, maxCASAttempts)
}

func (p *Publisher) wrote(res Result, rev uint64, size int) Result {
	res.Wrote, res.Revision, res.Bytes, res.Current = true, rev, size, res.Version
	p.observe(res.Version)
	return res
}

// observe raises the known version to v; it never lowers it.
func (p *Publisher) observe(v int64) {
	for {
		old := p.version.Load()
		if v <= old {
			return
		}
		if p.version.CompareAndSwap(old, v) {
			p.versionGauge.Set(float64(v))
			return
		}
	}
}

// storedVersion is the version of the sealed snapshot in the bucket, when it is one
// this control plane signed (a forged value with a huge version must not stop every
// later publish); why says what it is otherwise.
func (p *Publisher) storedVersion(sealed []byte) (version int64, ok bool, why string) {
	encoded, _, err := policy.Open(sealed, p.verifier)
	if err != nil {
		return 0, false, err.Error()
	}
	if version, ok = storedVersion(encoded); !ok {
		return 0, false, "not an encoded snapshot"
	}
	return version, true, ""
}
