package audit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/portcullis-gw/portcullis/shared/natsnames"
)

// Settings of the audit streams.
const (
	// DefaultStreamMaxAge is how long a region's stream keeps events when
	// StreamOptions.MaxAge is zero: long enough for a control plane that was down to
	// catch up, which keeps them in Postgres.
	DefaultStreamMaxAge = 30 * 24 * time.Hour
	// StreamDuplicates is the window in which JetStream drops an event whose request
	// id (Nats-Msg-Id) it has already stored.
	StreamDuplicates = 2 * time.Minute
)

// StreamOptions are the settings of a region's audit stream an operator chooses.
type StreamOptions struct {
	Region string
	// PlacementTag, if set, keeps the stream on servers with this tag (the region's
	// servers). Empty means no placement. In a cluster, a tag no server has makes
	// creating the stream fail; a single server (dev mode) ignores placement.
	PlacementTag string
	// Replicas of the stream; zero means 1.
	Replicas int
	// MaxAge of the events in the stream; zero means DefaultStreamMaxAge.
	MaxAge time.Duration
}

// StreamConfig is the configuration EnsureStream applies: PC_AUDIT_<REGION> on
// audit.<region>.>, file storage, no deletes or purges, duplicates dropped by
// request id within StreamDuplicates.
func StreamConfig(o StreamOptions) jetstream.StreamConfig {
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultStreamMaxAge
	}
	cfg := jetstream.StreamConfig{
		Name:        natsnames.AuditStream(o.Region),
		Description: "Portcullis audit events of region " + o.Region + " (metadata and keyed hashes, never prompts)",
		Subjects:    []string{regionSubjects(o.Region)},
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		MaxAge:      o.MaxAge,
		DenyDelete:  true,
		DenyPurge:   true,
		Duplicates:  StreamDuplicates,
	}
	if o.PlacementTag != "" {
		cfg.Placement = &jetstream.Placement{Tags: []string{o.PlacementTag}}
	}
	return cfg
}

// ErrStreamSettingsDiffer is returned by EnsureStream when the region's audit
// stream exists with other settings than the ones asked for.
var ErrStreamSettingsDiffer = errors.New("the audit stream exists with other settings")

// EnsureStream creates the region's audit stream, or does nothing when it exists
// with these settings. It never changes an existing stream: a region's data planes
// may create their stream but not update it (docs/nats.md), because a stream's
// settings (republish, sources) can make the server publish for them where they
// may not. When the stream exists with other settings, it returns an error wrapping
// ErrStreamSettingsDiffer; the stream works as it is.
func EnsureStream(ctx context.Context, js jetstream.JetStream, o StreamOptions) error {
	if o.Region == "" {
		return errors.New("audit stream: no region")
	}
	cfg := StreamConfig(o)
	_, err := js.CreateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return fmt.Errorf("%w: %s keeps its settings; change them with the control plane's NATS credentials "+
			"(for instance nats stream edit %s), not a data plane's", ErrStreamSettingsDiffer, cfg.Name, cfg.Name)
	}
	if err != nil {
		return fmt.Errorf("create stream %s: %w", cfg.Name, err)
	}
	return nil
}

// regionSubjects matches every client's subject in region.
func regionSubjects(region string) string { return natsnames.AuditSubjects(region) }
