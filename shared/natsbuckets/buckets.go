// Package natsbuckets creates the JetStream KV buckets Portcullis shares between the
// control plane and the data planes, with the settings each one needs. The control
// plane calls Ensure at start; data planes only ever open the buckets, and tests
// that run a data plane without a control plane call Ensure themselves.
package natsbuckets

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/portcullis-gw/portcullis/shared/natsnames"
)

// Defaults of Options.
const (
	// DefaultWorkerTTL is how long a worker's heartbeat outlives it. A crashed
	// worker's concurrency slots are reclaimed at most this long after its last
	// heartbeat.
	DefaultWorkerTTL = 10 * time.Second
	// PolicyHistory is how many past snapshots PC_POLICY keeps.
	PolicyHistory = 5
	// limitsMarkerTTL is how long PC_LIMITS keeps the marker a key leaves when its
	// TTL expires.
	limitsMarkerTTL = time.Minute
)

// Options are the settings an operator may choose.
type Options struct {
	// Replicas of every bucket (1 for a single server; 3 in a production cluster).
	Replicas int
	// WorkerTTL is the PC_WORKERS bucket's TTL: a heartbeat not renewed within it
	// disappears. Zero means DefaultWorkerTTL.
	WorkerTTL time.Duration
}

// Ensure creates the PC_POLICY, PC_LIMITS and PC_WORKERS buckets and the PC_KEYS,
// PC_ALERTS and PC_CHECKPOINTS streams, or updates their settings if they exist.
func Ensure(ctx context.Context, js jetstream.JetStream, o Options) error {
	var errs []error
	for _, cfg := range Configs(o) {
		if _, err := js.CreateOrUpdateKeyValue(ctx, cfg); err != nil {
			errs = append(errs, fmt.Errorf("create bucket %s: %w", cfg.Bucket, err))
		}
	}
	for _, cfg := range StreamConfigs(o) {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			errs = append(errs, fmt.Errorf("create stream %s: %w", cfg.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Retention of the event streams: long enough for a control plane that was down to
// catch up on key-access events and alerts, which it then keeps in Postgres.
const (
	KeysMaxAge   = 7 * 24 * time.Hour
	AlertsMaxAge = 30 * 24 * time.Hour
	// CheckpointsMaxAge keeps the signed audit checkpoints a year (a few hundred
	// bytes per region and interval), for outside systems that keep them; Postgres
	// keeps them too.
	CheckpointsMaxAge = 366 * 24 * time.Hour
)

// StreamConfigs are the stream settings Ensure applies: file storage, and no message
// may be deleted or the stream purged, since both hold security records.
func StreamConfigs(o Options) []jetstream.StreamConfig {
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	return []jetstream.StreamConfig{
		{
			Name:        natsnames.KeysStream,
			Description: "Portcullis key lifecycle and key-access events (never key material)",
			Subjects:    []string{natsnames.KeysSubjects},
			Storage:     jetstream.FileStorage,
			Replicas:    o.Replicas,
			MaxAge:      KeysMaxAge,
			DenyDelete:  true,
			DenyPurge:   true,
			Duplicates:  2 * time.Minute,
		},
		{
			Name:        natsnames.AlertsStream,
			Description: "Portcullis security and anomaly alerts",
			Subjects:    []string{natsnames.AlertsSubjects},
			Storage:     jetstream.FileStorage,
			Replicas:    o.Replicas,
			MaxAge:      AlertsMaxAge,
			DenyDelete:  true,
			DenyPurge:   true,
			Duplicates:  2 * time.Minute,
		},
		{
			Name:        natsnames.CheckpointsStream,
			Description: "Portcullis signed audit checkpoints: each region's audit chain head, signed by the control plane",
			Subjects:    []string{natsnames.CheckpointsSubjects},
			Storage:     jetstream.FileStorage,
			Replicas:    o.Replicas,
			MaxAge:      CheckpointsMaxAge,
			DenyDelete:  true,
			DenyPurge:   true,
			Duplicates:  2 * time.Minute,
		},
	}
}

// Configs are the bucket settings Ensure applies.
func Configs(o Options) []jetstream.KeyValueConfig {
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.WorkerTTL <= 0 {
		o.WorkerTTL = DefaultWorkerTTL
	}
	return []jetstream.KeyValueConfig{
		{
			Bucket:      natsnames.PolicyBucket,
			Description: "Portcullis policy snapshot, written by the control plane",
			History:     PolicyHistory,
			Storage:     jetstream.FileStorage,
			Replicas:    o.Replicas,
		},
		{
			// File storage, although docs/design.md §3 allows memory: a memory stream
			// does not survive a single server's restart (the bucket itself would be
			// gone), and leases make writes rare (a few per thousand requests), so
			// the disk costs little. Every key carries its own TTL, so old windows
			// clear themselves.
			Bucket:         natsnames.LimitsBucket,
			Description:    "Portcullis global limit counters, compare-and-swap updated by data planes",
			History:        1,
			Storage:        jetstream.FileStorage,
			Replicas:       o.Replicas,
			LimitMarkerTTL: limitsMarkerTTL,
		},
		{
			Bucket:      natsnames.WorkersBucket,
			Description: "Portcullis data-plane heartbeats",
			History:     1,
			TTL:         o.WorkerTTL,
			Storage:     jetstream.FileStorage, // survives a server restart, like PC_LIMITS
			Replicas:    o.Replicas,
		},
	}
}
