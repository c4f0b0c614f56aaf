package auditarchive

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive/checkpoint"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/signing"
)

// DefaultCheckpointInterval is how often the Checkpointer signs the regions' heads
// unless told otherwise.
const DefaultCheckpointInterval = 5 * time.Minute

// publishBatch is the most checkpoints one round publishes.
const publishBatch = 500

// CheckpointStore keeps the signed checkpoints.
type CheckpointStore interface {
	UncheckpointedAuditHeads(ctx context.Context) ([]store.AuditRegionHead, error)
	AddAuditCheckpoint(ctx context.Context, c checkpoint.Checkpoint) (bool, error)
	UnpublishedAuditCheckpoints(ctx context.Context, limit int) ([]checkpoint.Checkpoint, error)
	MarkAuditCheckpointPublished(ctx context.Context, region string, seq int64) error
}

var _ CheckpointStore = (*store.Store)(nil)

// CheckpointerOptions configures a Checkpointer. Store, JetStream and Signer are
// required.
type CheckpointerOptions struct {
	Store     CheckpointStore
	JetStream jetstream.JetStream
	Signer    *signing.Signer
	// Interval is the time between rounds; DefaultCheckpointInterval when 0.
	Interval time.Duration
	Log      *slog.Logger
}

// Checkpointer signs each region's audit chain head at intervals: a round signs the
// head of every region whose head moved since its last checkpoint, keeps the
// checkpoint in Postgres and publishes it on checkpoints.audit.<region>
// (PC_CHECKPOINTS). Replicas may all run one: a head is kept once, and published by
// the replica that kept it; a checkpoint that could not be published (NATS down) is
// published by a later round. Its methods are safe for concurrent use; Run runs once.
type Checkpointer struct {
	st       CheckpointStore
	js       jetstream.JetStream
	signer   *signing.Signer
	interval time.Duration
	log      *slog.Logger

	checkpoints *prometheus.CounterVec
}

// NewCheckpointer returns a Checkpointer; Run starts it.
func NewCheckpointer(o CheckpointerOptions) *Checkpointer {
	if o.Interval <= 0 {
		o.Interval = DefaultCheckpointInterval
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Checkpointer{st: o.Store, js: o.JetStream, signer: o.Signer, interval: o.Interval, log: o.Log,
		checkpoints: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "portcullis_controlplane", Name: "audit_checkpoints_total",
			Help: "Signed audit checkpoints, by result: signed (kept in Postgres), published (on PC_CHECKPOINTS) or publish_failed (left for the next round).",
		}, []string{"result"}),
	}
}

// Collectors returns the checkpointer's metrics, for the caller to register.
func (c *Checkpointer) Collectors() []prometheus.Collector {
	return []prometheus.Collector{c.checkpoints}
}

// Run runs a round at once and then every Interval until ctx ends. A failed round
// is logged and the next one tries again.
func (c *Checkpointer) Run(ctx context.Context) error {
	c.log.Info("signing audit checkpoints", "interval", c.interval, "key_id", c.signer.KeyID())
	tick := time.NewTicker(c.interval)
	defer tick.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		if err := c.Round(rctx); err != nil && ctx.Err() == nil {
			c.log.Warn("audit checkpoint round failed; the next round tries again", "err", err)
		}
		cancel()
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Round signs and keeps a checkpoint of every region whose head moved since its
// last one, then publishes every checkpoint not yet published.
func (c *Checkpointer) Round(ctx context.Context) error {
	heads, err := c.st.UncheckpointedAuditHeads(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, h := range heads {
		cp := checkpoint.Sign(c.signer, h.Region, h.Seq, h.Hash, h.At)
		added, err := c.st.AddAuditCheckpoint(ctx, cp)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if added {
			c.checkpoints.WithLabelValues("signed").Inc()
			c.log.Debug("audit checkpoint signed", "region", cp.Region, "seq", cp.Seq, "chain_hash", cp.ChainHash)
		}
	}
	pending, err := c.st.UnpublishedAuditCheckpoints(ctx, publishBatch)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, cp := range pending {
		if err := c.publish(ctx, cp); err != nil {
			c.checkpoints.WithLabelValues("publish_failed").Inc()
			errs = append(errs, err)
			break // NATS is likely down: the next round publishes the rest
		}
		c.checkpoints.WithLabelValues("published").Inc()
		if err := c.st.MarkAuditCheckpointPublished(ctx, cp.Region, cp.Seq); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// publish publishes cp on its region's subject, deduplicated by region and seq.
func (c *Checkpointer) publish(ctx context.Context, cp checkpoint.Checkpoint) error {
	data, err := checkpoint.Encode(cp)
	if err != nil {
		return err
	}
	id := "audit-checkpoint:" + cp.Region + ":" + strconv.FormatInt(cp.Seq, 10)
	if _, err := c.js.Publish(ctx, natsnames.AuditCheckpointSubject(cp.Region), data, jetstream.WithMsgID(id)); err != nil {
		return fmt.Errorf("publish audit checkpoint of region %s at seq %d: %w", cp.Region, cp.Seq, err)
	}
	return nil
}
