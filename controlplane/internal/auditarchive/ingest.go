// Package auditarchive archives the data planes' audit events in Postgres: one durable
// pull consumer per region stream (PC_AUDIT_<REGION>, found by listing streams), in
// batches, each batch one transaction that skips request ids already archived and
// extends the region's hash chain (see packages chain and export, and store.AppendAudit).
//
// Delivery is at least once and archiving is idempotent: a message is acked only
// after its batch committed, a batch that fails to commit is redelivered, and a
// redelivered or replayed event is recognised by its request id. An event that does
// not decode, or belongs to another region than its stream, is terminated (never
// redelivered), logged and counted.
package auditarchive

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive/chain"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/shared/audit"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
)

// Defaults of Options.
const (
	DefaultDiscoverInterval = 5 * time.Second
	DefaultBatchSize        = 500
	DefaultFetchWait        = time.Second
	DefaultRetryDelay       = 2 * time.Second
)

// ConsumerPrefix starts the name of every region's durable consumer; control-plane
// replicas share it, so each event is archived by one of them.
const ConsumerPrefix = "portcullis-controlplane-audit-"

// streamPrefix starts the name of every region's audit stream (natsnames.AuditStream).
var streamPrefix = natsnames.AuditStreamPrefix

// Store archives batches of audit events.
type Store interface {
	AppendAudit(ctx context.Context, region string, events []store.AuditEvent) (store.AuditAppend, error)
}

var _ Store = (*store.Store)(nil)

// Options configures an Ingester. JetStream and Store are required.
type Options struct {
	JetStream jetstream.JetStream
	Store     Store
	Log       *slog.Logger
	// DiscoverInterval is how often the streams are listed to find new regions.
	DiscoverInterval time.Duration
	// BatchSize is the most events archived in one transaction.
	BatchSize int
	// FetchWait is how long one pull waits for an event when none is pending.
	FetchWait time.Duration
	// RetryDelay is how long a batch that could not be archived waits before it is
	// redelivered, and how long a failing consumer waits before it tries again.
	RetryDelay time.Duration
}

// Ingester archives every region's audit stream. Its methods are safe for concurrent
// use; Run runs once.
type Ingester struct {
	js       jetstream.JetStream
	st       Store
	log      *slog.Logger
	discover time.Duration
	batch    int
	wait     time.Duration
	retry    time.Duration

	events   *prometheus.CounterVec
	failures *prometheus.CounterVec
	lag      *prometheus.GaugeVec
}

// New returns an Ingester; Run starts it.
func New(o Options) *Ingester {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.DiscoverInterval <= 0 {
		o.DiscoverInterval = DefaultDiscoverInterval
	}
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.FetchWait <= 0 {
		o.FetchWait = DefaultFetchWait
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = DefaultRetryDelay
	}
	return &Ingester{
		js: o.JetStream, st: o.Store, log: o.Log,
		discover: o.DiscoverInterval, batch: o.BatchSize, wait: o.FetchWait, retry: o.RetryDelay,
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "portcullis_controlplane", Name: "audit_events_total",
			Help: "Audit events taken from the region streams, by region and result: stored (archived), duplicate (request id already archived) or rejected (undecodable or of another region; terminated).",
		}, []string{"region", "result"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "portcullis_controlplane", Name: "audit_archive_failures_total",
			Help: "Batches of audit events that could not be archived and were left for redelivery, by region.",
		}, []string{"region"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "portcullis_controlplane", Name: "audit_lag",
			Help: "Audit events in a region's stream not yet delivered to the archive (the consumer's pending count).",
		}, []string{"region"}),
	}
}

// Collectors returns the ingester's metrics, for the caller to register.
func (in *Ingester) Collectors() []prometheus.Collector {
	return []prometheus.Collector{in.events, in.failures, in.lag}
}

// ConsumerName is the durable consumer of the audit stream named stream.
func ConsumerName(stream string) string { return ConsumerPrefix + streamRegion(stream) }

// streamRegion is the region label of an audit stream: its name after the prefix,
// lower-cased (regions with '.' appear with '_', as in the stream name).
func streamRegion(stream string) string {
	return strings.ToLower(strings.TrimPrefix(stream, streamPrefix))
}

// Run archives every audit stream until ctx ends, listing the streams every
// DiscoverInterval to pick up new regions. It returns when every consumer stopped.
func (in *Ingester) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	running := map[string]bool{}
	ended := make(chan string)
	tick := time.NewTicker(in.discover)
	defer tick.Stop()
	for {
		streams, err := in.streams(ctx)
		if err != nil && ctx.Err() == nil {
			in.log.Warn("listing the audit streams failed; retrying", "err", err)
		}
		for _, s := range streams {
			if running[s] {
				continue
			}
			running[s] = true
			in.log.Info("archiving audit stream", "stream", s, "consumer", ConsumerName(s))
			wg.Go(func() {
				in.runStream(ctx, s)
				select {
				case ended <- s:
				case <-ctx.Done():
				}
			})
		}
		select {
		case <-ctx.Done():
			return nil
		case s := <-ended:
			delete(running, s)
		case <-tick.C:
		}
	}
}

// streams lists the audit streams.
func (in *Ingester) streams(ctx context.Context) ([]string, error) {
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	l := in.js.StreamNames(lctx)
	var out []string
	for name := range l.Name() {
		if strings.HasPrefix(name, streamPrefix) && len(name) > len(streamPrefix) {
			out = append(out, name)
		}
	}
	if err := l.Err(); err != nil {
		return out, fmt.Errorf("list streams: %w", err)
	}
	return out, nil
}

// runStream archives stream until ctx ends or the stream is deleted.
func (in *Ingester) runStream(ctx context.Context, stream string) {
	region := streamRegion(stream)
	for ctx.Err() == nil {
		err := in.secureStream(ctx, stream)
		if errors.Is(err, errMirror) {
			in.log.Error("audit stream is a mirror of another stream: not archived; delete it with the control plane's NATS credentials so that the region's data planes create it again",
				"stream", stream)
			return
		}
		var cons jetstream.Consumer
		if err == nil {
			cons, err = in.js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
				Durable:       ConsumerName(stream),
				Description:   "Portcullis control planes archiving the region's audit events",
				AckPolicy:     jetstream.AckExplicitPolicy,
				AckWait:       30 * time.Second,
				MaxAckPending: 10 * in.batch,
			})
		}
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			in.log.Info("audit stream gone", "stream", stream)
			in.lag.DeleteLabelValues(region)
			return
		}
		if err == nil {
			err = in.consume(ctx, cons, stream)
		}
		if ctx.Err() != nil {
			return
		}
		in.log.Warn("audit consumer failed; retrying", "stream", stream, "err", err)
		sleep(ctx, in.retry)
	}
}

// errMirror: an audit stream that mirrors another cannot be made safe by an update.
var errMirror = errors.New("the audit stream is a mirror")

// secureStream undoes what a data plane's NATS identity, which may create its
// region's audit stream (docs/nats.md), should never have set on it: republishing,
// sources or a subject transform (each makes the server publish or copy for it,
// where its own permissions would refuse), subjects other than the region's audit
// subjects, rollups, deletes or purges. It logs an error naming what it reset.
// (Events copied in from another region's stream are refused one by one: their
// region does not belong here.) A mirror cannot be updated away: it returns
// errMirror.
func (in *Ingester) secureStream(ctx context.Context, stream string) error {
	st, err := in.js.Stream(ctx, stream)
	if err != nil {
		return err
	}
	cfg := st.CachedInfo().Config
	var reset []string
	if cfg.RePublish != nil {
		reset, cfg.RePublish = append(reset, "republish"), nil
	}
	if len(cfg.Sources) > 0 {
		reset, cfg.Sources = append(reset, "sources"), nil
	}
	if cfg.SubjectTransform != nil {
		reset, cfg.SubjectTransform = append(reset, "subject_transform"), nil
	}
	// A rollup header, a delete or a purge would remove events not archived yet.
	if cfg.AllowRollup {
		reset, cfg.AllowRollup = append(reset, "allow_rollup"), false
	}
	if !cfg.DenyDelete || !cfg.DenyPurge {
		reset, cfg.DenyDelete, cfg.DenyPurge = append(reset, "deny_delete_and_purge"), true, true
	}
	// A mirror has no subjects and cannot stop mirroring: what else it has is reset
	// all the same (a republish above all), but it is not archived.
	mirror := cfg.Mirror != nil
	if !mirror && (len(cfg.Subjects) != 1 || !isRegionAuditSubjects(cfg.Subjects[0], stream)) {
		// The stream name keeps the region in upper case only: the data planes'
		// subjects are lower case where the region is (natsnames.AuditSubjects).
		reset, cfg.Subjects = append(reset, "subjects"), []string{natsnames.AuditSubjects(streamRegion(stream))}
	}
	if len(reset) > 0 {
		in.log.Error("audit stream had settings a data plane may not set; the control plane reset them", "stream", stream, "reset", reset)
		if _, err := in.js.UpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("reset the settings of %s: %w", stream, err)
		}
	}
	if mirror {
		return errMirror
	}
	return nil
}

// isRegionAuditSubjects says whether subjects is audit.<region>.> for the region
// of stream.
func isRegionAuditSubjects(subjects, stream string) bool {
	region, ok := strings.CutPrefix(subjects, "audit.")
	if !ok {
		return false
	}
	region, ok = strings.CutSuffix(region, ".>")
	return ok && !strings.ContainsAny(region, ".*>") && natsnames.AuditStream(region) == stream
}

// consume archives batches from cons until ctx ends or a pull fails.
func (in *Ingester) consume(ctx context.Context, cons jetstream.Consumer, stream string) error {
	region := streamRegion(stream)
	for ctx.Err() == nil {
		msgs, err := in.fetch(ctx, cons)
		if len(msgs) == 0 {
			if err != nil {
				return err
			}
			in.lag.WithLabelValues(region).Set(0)
			continue
		}
		if meta, err := msgs[len(msgs)-1].Metadata(); err == nil {
			in.lag.WithLabelValues(region).Set(float64(meta.NumPending))
		}
		if !in.archive(ctx, stream, msgs) {
			sleep(ctx, in.retry)
		}
	}
	return nil
}

// fetch pulls up to a batch of what is pending, or else waits up to FetchWait for
// one message.
func (in *Ingester) fetch(ctx context.Context, cons jetstream.Consumer) ([]jetstream.Msg, error) {
	batch, err := cons.FetchNoWait(in.batch)
	if err != nil {
		return nil, err
	}
	msgs, err := drain(batch)
	if len(msgs) > 0 || err != nil {
		return msgs, err
	}
	wctx, cancel := context.WithTimeout(ctx, in.wait)
	defer cancel()
	batch, err = cons.Fetch(1, jetstream.FetchContext(wctx))
	if err != nil {
		return nil, err
	}
	msgs, err = drain(batch)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		err = nil // the wait ended with nothing pending, or Run is stopping
	}
	return msgs, err
}

func drain(b jetstream.MessageBatch) ([]jetstream.Msg, error) {
	var msgs []jetstream.Msg
	for m := range b.Messages() {
		msgs = append(msgs, m)
	}
	return msgs, b.Error()
}

// pending is the decoded messages of one region in a batch.
type pending struct {
	msgs   []jetstream.Msg
	events []store.AuditEvent
}

// archive archives msgs, one transaction per region (a stream holds one region,
// unless two region names map to one stream name), acking what was archived and
// leaving the rest for redelivery. It reports whether everything was archived.
func (in *Ingester) archive(ctx context.Context, stream string, msgs []jetstream.Msg) bool {
	label := streamRegion(stream)
	byRegion := map[string]*pending{}
	var order []string
	for _, m := range msgs {
		ev, err := in.decode(stream, m.Data())
		if err != nil {
			in.log.Error("audit event rejected", "stream", stream, "subject", m.Subject(), "err", err)
			in.events.WithLabelValues(label, "rejected").Inc()
			_ = m.Term()
			continue
		}
		p := byRegion[ev.Event.Region]
		if p == nil {
			p = &pending{}
			byRegion[ev.Event.Region] = p
			order = append(order, ev.Event.Region)
		}
		p.msgs = append(p.msgs, m)
		p.events = append(p.events, ev)
	}
	ok := true
	for _, region := range order {
		p := byRegion[region]
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		res, err := in.st.AppendAudit(sctx, region, p.events)
		cancel()
		if err != nil {
			in.log.Warn("archiving audit events failed; they will be redelivered", "stream", stream, "events", len(p.events), "err", err)
			in.failures.WithLabelValues(label).Inc()
			for _, m := range p.msgs {
				_ = m.NakWithDelay(in.retry)
			}
			ok = false
			continue
		}
		for _, m := range p.msgs {
			_ = m.Ack()
		}
		in.events.WithLabelValues(label, "stored").Add(float64(res.Stored))
		in.events.WithLabelValues(label, "duplicate").Add(float64(res.Duplicates))
	}
	return ok
}

// decode parses one message of stream into an event to archive.
func (in *Ingester) decode(stream string, data []byte) (store.AuditEvent, error) {
	e, err := audit.Decode(data)
	if err != nil {
		return store.AuditEvent{}, err
	}
	switch {
	case !store.ValidAuditRegion(e.Region):
		return store.AuditEvent{}, fmt.Errorf("audit event: region %q is not a region name", e.Region)
	case natsnames.AuditStream(e.Region) != stream:
		return store.AuditEvent{}, fmt.Errorf("audit event: region %q does not belong in stream %s", e.Region, stream)
	}
	b, err := chain.Canonical(e)
	if err != nil {
		return store.AuditEvent{}, err
	}
	e.TS = e.TS.UTC()
	return store.AuditEvent{Event: e, JSON: b}, nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
