package app

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/portcullis-gw/portcullis/shared/natsembed"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
)

// policyHistory is how many past snapshots the PC_POLICY bucket keeps.
const policyHistory = 5

// startEmbeddedNATS runs the dev-mode nats-server with its JetStream store under the
// data directory.
func startEmbeddedNATS(cfg Config) (*server.Server, error) {
	return natsembed.Start(natsembed.Options{
		Listen:     cfg.EmbeddedNATSListen,
		StoreDir:   filepath.Join(cfg.DataDir, "nats"),
		ServerName: "portcullis-controlplane-embedded",
	})
}

// connectNATS connects to url and keeps reconnecting for the life of the connection.
func connectNATS(url string, log *slog.Logger) (*nats.Conn, error) {
	nc, err := nats.Connect(url,
		nats.Name("portcullis-controlplane"),
		nats.Timeout(5*time.Second),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "url", c.ConnectedUrlRedacted()) }),
	)
	if err != nil {
		return nil, fmt.Errorf("connect to nats: %w", err)
	}
	return nc, nil
}

// policyBucket creates the PC_POLICY bucket, or updates its settings if it exists.
func policyBucket(ctx context.Context, nc *nats.Conn) (jetstream.KeyValue, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      natsnames.PolicyBucket,
		Description: "Portcullis policy snapshot, written by the control plane",
		History:     policyHistory,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("create bucket %s: %w", natsnames.PolicyBucket, err)
	}
	return kv, nil
}
