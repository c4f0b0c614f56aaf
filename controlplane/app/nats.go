package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/portcullis-gw/portcullis/controlplane/internal/console"
	"github.com/portcullis-gw/portcullis/shared/natsauth"
	"github.com/portcullis-gw/portcullis/shared/natsbuckets"
	"github.com/portcullis-gw/portcullis/shared/natsconn"
	"github.com/portcullis-gw/portcullis/shared/natsembed"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
)

// NATSAuthDir is where a control plane with the embedded nats-server keeps the NATS
// operator's and accounts' keys and the credentials it issues, and where
// "controlplane nats-auth" writes them for an external nats-server.
func NATSAuthDir(dataDir string) string { return filepath.Join(dataDir, "nats-auth") }

// startEmbeddedNATS runs the dev-mode nats-server with its JetStream store under the
// data directory, trusting auth's operator: every client needs credentials.
func startEmbeddedNATS(cfg Config, auth *natsauth.Authority) (*server.Server, error) {
	return natsembed.Start(natsembed.Options{
		Listen:     cfg.EmbeddedNATSListen,
		StoreDir:   filepath.Join(cfg.DataDir, "nats"),
		ServerName: "portcullis-controlplane-embedded",
		Configure:  auth.Configure,
	})
}

// connectNATS connects to url with the configured credentials and CA, and keeps
// reconnecting for the life of the connection.
func connectNATS(cfg Config, url string, log *slog.Logger) (*nats.Conn, error) {
	return natsconn.Connect(cfg.natsOptions(url), log, nats.Timeout(5*time.Second))
}

// ensureBuckets creates the PC_POLICY, PC_LIMITS and PC_WORKERS buckets with the
// configured replicas and worker TTL, or updates their settings if they exist, and
// returns PC_POLICY, which the publisher writes.
func ensureBuckets(ctx context.Context, nc *nats.Conn, cfg Config) (jetstream.KeyValue, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if err := natsbuckets.Ensure(ctx, js, natsbuckets.Options{Replicas: cfg.NATSReplicas, WorkerTTL: cfg.WorkerTTL}); err != nil {
		return nil, err
	}
	kv, err := js.KeyValue(ctx, natsnames.PolicyBucket)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", natsnames.PolicyBucket, err)
	}
	return kv, nil
}

// limitsReader reads PC_LIMITS keys for the console, through the bucket's stream as
// the data planes do: a key's expiry or delete marker reads as nil. Each read is
// bounded by a second.
func limitsReader(nc *nats.Conn) console.LimitsReader {
	return func(ctx context.Context, key string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		js, err := jetstream.New(nc)
		if err != nil {
			return nil, err
		}
		st, err := js.Stream(ctx, natsnames.KVStream(natsnames.LimitsBucket))
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", natsnames.LimitsBucket, err)
		}
		msg, err := st.GetLastMsgForSubject(ctx, natsnames.KVSubject(natsnames.LimitsBucket, key))
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			return nil, nil
		case err != nil:
			return nil, fmt.Errorf("read %s: %w", key, err)
		case msg.Header.Get("KV-Operation") != "" || msg.Header.Get("Nats-Marker-Reason") != "":
			return nil, nil
		}
		return msg.Data, nil
	}
}
