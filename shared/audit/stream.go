package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
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
	// maxStreamReplicas is JetStream's own maximum.
	maxStreamReplicas = 5
)

// StreamOptions are the settings of a region's audit stream an operator chooses
// (on the region's data planes, which ask the control plane to create it).
type StreamOptions struct {
	Region string `json:"region"`
	// PlacementTag, if set, keeps the stream on servers with this tag (the region's
	// servers). Empty means no placement. In a cluster, a tag no server has makes
	// creating the stream fail; a single server (dev mode) ignores placement.
	PlacementTag string `json:"placement_tag,omitempty"`
	// Replicas of the stream; zero means 1.
	Replicas int `json:"replicas,omitempty"`
	// MaxAge of the events in the stream; zero means DefaultStreamMaxAge.
	MaxAge time.Duration `json:"max_age,omitempty"`
}

// Validate reports settings the control plane will not create a stream with.
func (o StreamOptions) Validate() error {
	switch {
	case o.Region == "":
		return errors.New("audit stream: no region")
	case o.Replicas < 0 || o.Replicas > maxStreamReplicas:
		return fmt.Errorf("audit stream: replicas %d: want 1 to %d", o.Replicas, maxStreamReplicas)
	case o.MaxAge != 0 && o.MaxAge < time.Hour:
		return fmt.Errorf("audit stream: max age %s: want at least 1h", o.MaxAge)
	case len(o.PlacementTag) > 128:
		return errors.New("audit stream: placement tag longer than 128 bytes")
	}
	return nil
}

// StreamConfig is the one configuration of a region's audit stream: PC_AUDIT_<REGION>
// on audit.<region>.>, file storage, no deletes, purges or rollups, duplicates
// dropped by request id within StreamDuplicates, and nothing that publishes or
// copies elsewhere.
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
		Subjects:    []string{natsnames.AuditSubjects(o.Region)},
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

// StreamCreateReply is the control plane's answer to a request to create a
// region's audit stream (natsnames.AuditStreamCreateSubject).
type StreamCreateReply struct {
	// Result is "created" (or there with these very settings), "differs" (the
	// stream exists with other settings, which it keeps) or "error".
	Result string `json:"result"`
	Error  string `json:"error,omitempty"`
}

// The results of a StreamCreateReply.
const (
	StreamCreated = "created"
	StreamDiffers = "differs"
	StreamError   = "error"
)

// EncodeStreamCreateReply is r as JSON.
func EncodeStreamCreateReply(r StreamCreateReply) []byte {
	b, _ := json.Marshal(r) // a struct of strings always marshals
	return b
}

// ServeStreamCreate answers requests to create a region's audit stream on nc
// (the control plane's connection, which may create streams): it creates
// StreamConfig of the options asked for, for the region the subject names (which a
// region's data planes may ask for only their own; docs/nats.md), and answers with
// a StreamCreateReply. It returns the subscription; closing the connection ends it.
// A request waits for the creation, which may take a while in a cluster.
func ServeStreamCreate(nc *nats.Conn, js jetstream.JetStream, timeout time.Duration) (*nats.Subscription, error) {
	// One control plane of several answers each request.
	sub, err := nc.QueueSubscribe(natsnames.AuditStreamCreateSubjects, "portcullis-controlplane", func(msg *nats.Msg) {
		reply := createStream(msg, js, timeout)
		if msg.Reply != "" {
			_ = msg.Respond(EncodeStreamCreateReply(reply))
		}
	})
	if err != nil {
		return nil, fmt.Errorf("serve audit stream creation: %w", err)
	}
	// Once it returns, the server knows the subscription (when NATS is up).
	_ = nc.Flush()
	return sub, nil
}

func createStream(msg *nats.Msg, js jetstream.JetStream, timeout time.Duration) StreamCreateReply {
	var o StreamOptions
	if err := json.Unmarshal(msg.Data, &o); err != nil {
		return StreamCreateReply{Result: StreamError, Error: "the request is not stream options JSON"}
	}
	o.Region = strings.TrimPrefix(msg.Subject, strings.TrimSuffix(natsnames.AuditStreamCreateSubjects, "*"))
	if err := o.Validate(); err != nil {
		return StreamCreateReply{Result: StreamError, Error: err.Error()}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cfg := StreamConfig(o)
	_, err := js.CreateStream(ctx, cfg)
	switch {
	case errors.Is(err, jetstream.ErrStreamNameAlreadyInUse):
		return StreamCreateReply{Result: StreamDiffers, Error: cfg.Name + " exists with other settings, which it keeps"}
	case err != nil:
		return StreamCreateReply{Result: StreamError, Error: "create " + cfg.Name + ": " + err.Error()}
	}
	return StreamCreateReply{Result: StreamCreated}
}
