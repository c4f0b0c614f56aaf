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

	"github.com/portcullis-gw/portcullis/shared/natsconn"
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

// connectNATS connects to url with the configured credentials and CA, and keeps
// reconnecting for the life of the connection.
func connectNATS(cfg Config, url string, log *slog.Logger) (*nats.Conn, error) {
	return natsconn.Connect(cfg.natsOptions(url), log, nats.Timeout(5*time.Second))
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
