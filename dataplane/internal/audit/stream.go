package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/portcullis-gw/portcullis/shared/audit"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
)

// The audit stream's settings are shared with the control plane, which creates
// the stream (shared/audit).
const (
	DefaultStreamMaxAge = audit.DefaultStreamMaxAge
	StreamDuplicates    = audit.StreamDuplicates
)

// StreamOptions are the settings of a region's audit stream an operator chooses.
type StreamOptions = audit.StreamOptions

// ErrStreamSettingsDiffer is returned by EnsureStream when the region's audit
// stream exists with other settings than the ones asked for.
var ErrStreamSettingsDiffer = errors.New("the audit stream exists with other settings")

// EnsureStream asks the control plane to create the region's audit stream with
// these settings (natsnames.AuditStreamCreateSubject); it does nothing to a stream
// that exists with them. A data plane never creates or changes a stream itself: a
// stream's settings (republish, sources) can make the server publish or copy for
// it where its permissions refuse (docs/nats.md). When the stream exists with
// other settings, it returns an error wrapping ErrStreamSettingsDiffer; the stream
// works as it is.
func EnsureStream(ctx context.Context, js jetstream.JetStream, o StreamOptions) error {
	if err := o.Validate(); err != nil {
		return err
	}
	body, err := json.Marshal(o)
	if err != nil {
		return err
	}
	subject := natsnames.AuditStreamCreateSubject(o.Region)
	msg, err := js.Conn().RequestWithContext(ctx, subject, body)
	if err != nil {
		return fmt.Errorf("ask the control plane for %s: %w", natsnames.AuditStream(o.Region), err)
	}
	var reply audit.StreamCreateReply
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		return fmt.Errorf("ask the control plane for %s: an answer that is no stream-create reply", natsnames.AuditStream(o.Region))
	}
	switch reply.Result {
	case audit.StreamCreated:
		return nil
	case audit.StreamDiffers:
		return fmt.Errorf("%w: %s; change them with the control plane's NATS credentials "+
			"(for instance nats stream edit %s), not a data plane's", ErrStreamSettingsDiffer, reply.Error, natsnames.AuditStream(o.Region))
	}
	return fmt.Errorf("the control plane did not create %s: %s", natsnames.AuditStream(o.Region), reply.Error)
}
