package rotator

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/shared/keyevents"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
)

// AccessConsumer is the durable consumer through which control planes store the
// workers' key-access events; several control planes share it, so each event is
// stored by one.
const AccessConsumer = natsnames.KeysAccessConsumer

// Ingest stores every key-access event published on PC_KEYS in Postgres, once
// (by event id), until ctx ends. An event that cannot be decoded is logged and
// dropped; one that cannot be stored is redelivered.
func Ingest(ctx context.Context, js jetstream.JetStream, st *store.Store, log *slog.Logger) error {
	cons, err := js.CreateOrUpdateConsumer(ctx, natsnames.KeysStream, jetstream.ConsumerConfig{
		Durable:       AccessConsumer,
		FilterSubject: natsnames.KeysAccessSubjects,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 1000,
	})
	if err != nil {
		return fmt.Errorf("key-access consumer: %w", err)
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		a, err := keyevents.DecodeAccess(msg.Data())
		if err != nil {
			log.Error("key-access event rejected", "subject", msg.Subject(), "err", err)
			_ = msg.Term()
			return
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := st.AddKeyAccess(sctx, a); err != nil {
			log.Warn("storing a key-access event failed; it will be redelivered", "err", err)
			_ = msg.NakWithDelay(time.Second)
			return
		}
		_ = msg.Ack()
	})
	if err != nil {
		return fmt.Errorf("key-access consumer: %w", err)
	}
	<-ctx.Done()
	cc.Stop()
	return nil
}
