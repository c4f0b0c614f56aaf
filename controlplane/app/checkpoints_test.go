package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/controlplane/admintest"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive/checkpoint"
	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive/export"
	"github.com/portcullis-gw/portcullis/controlplane/pgtest"
	"github.com/portcullis-gw/portcullis/shared/audit"
	"github.com/portcullis-gw/portcullis/shared/logtest"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/signing"
	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

func TestAuditCheckpointConfig(t *testing.T) {
	dir := t.TempDir()
	_, _, err := LoadConfig([]string{"--database-url", "postgres://x@127.0.0.1/db", "--audit-signing-key-file", dir,
		"--audit-checkpoint-interval", "100ms"}, env(nil), io.Discard)
	for _, want := range []string{fmt.Sprintf(`PORTCULLIS_AUDIT_SIGNING_KEY_FILE=%q: is a directory`, dir),
		`PORTCULLIS_AUDIT_CHECKPOINT_INTERVAL="100ms": must be between 1s and 24h`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
	cfg, _, err := LoadConfig(nil, env(map[string]string{"PORTCULLIS_DATABASE_URL": "postgres://x@127.0.0.1/db",
		"PORTCULLIS_AUDIT_SIGNING_KEY_FILE": "/etc/portcullis/audit.pem", "PORTCULLIS_AUDIT_CHECKPOINT_INTERVAL": "0"}), io.Discard)
	if err != nil || cfg.AuditSigningKeyFile != "/etc/portcullis/audit.pem" || cfg.AuditCheckpointInterval != 0 {
		t.Fatalf("from the environment: %+v %v", cfg, err)
	}
}

// TestAuditCheckpointsAndSignedExports runs the signed checkpoints inside one
// control plane: the key is generated in the data directory on first start (its
// public key beside it, the key id logged and the key never), exports verify with
// that public key, and each region's head is signed and published on
// checkpoints.audit.<region> as events arrive.
func TestAuditCheckpointsAndSignedExports(t *testing.T) {
	logs := &logtest.Buffer{}
	dataDir := filepath.Join(t.TempDir(), "data")
	cfg := Config{DatabaseURL: pgtest.Database(t), Listen: "127.0.0.1:0", MetricsListen: "127.0.0.1:0", EmbeddedNATSListen: "127.0.0.1:0", DataDir: dataDir,
		LogLevel: "info", PublishInterval: DefaultPublishInterval, NATSReplicas: DefaultNATSReplicas, WorkerTTL: DefaultWorkerTTL,
		AuditIngest: true, AuditCheckpointInterval: time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := Start(ctx, cfg, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := a.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	keyFile := filepath.Join(dataDir, AuditSigningKeyName)
	info, err := os.Stat(keyFile)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("the audit signing key: %v %v", info, err)
	}
	if a.AuditPublicKeyFile() != filepath.Join(dataDir, "audit-signing-key.pub") {
		t.Fatalf("public key file %s", a.AuditPublicKeyFile())
	}
	keys, err := signing.LoadPublicKeys(a.AuditPublicKeyFile())
	if err != nil {
		t.Fatal(err)
	}
	keyID := keys.KeyIDs()[0]
	priv, _ := os.ReadFile(keyFile)
	if !strings.Contains(logs.String(), keyID) || strings.Contains(logs.String(), strings.Split(string(priv), "\n")[1]) {
		t.Fatal("the log lacks the key id, or holds the key")
	}

	nc, err := nats.Connect(a.NATSURL(), asControlPlane(t, a))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: natsnames.AuditStream("eu"),
		Subjects: []string{natsnames.AuditSubjects("eu")}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	checkpoints := make(chan *nats.Msg, 100)
	sub, err := nc.ChanSubscribe(natsnames.AuditCheckpointSubject("eu"), checkpoints)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	now := time.Now().UTC()
	const n = 10
	for i := range n {
		b, _ := audit.Encode(audit.Event{TS: now, RequestID: fmt.Sprintf("eu-%d", i), Region: "eu", ClientID: "c1", Status: 200})
		if _, err := js.Publish(ctx, natsnames.AuditSubject("eu", "c1"), b); err != nil {
			t.Fatal(err)
		}
	}

	// Checkpoints of the moving head, the last at seq n.
	deadline := time.After(20 * time.Second)
	for last := int64(0); last < n; {
		select {
		case m := <-checkpoints:
			c, err := checkpoint.Decode(m.Data)
			if err != nil || c.Verify(keys) != nil || c.Seq <= last || c.Region != "eu" {
				t.Fatalf("checkpoint %s: %v", m.Data, err)
			}
			last = c.Seq
		case <-deadline:
			t.Fatal("no checkpoint of eu at seq 10 within 20s")
		}
	}

	token := admintest.Admin(t, "http://"+a.Addr(), dataDir)
	url := fmt.Sprintf("http://%s/admin/v1/audit/export?region=eu&from=%s&to=%s&format=csv", a.Addr(),
		now.Add(-time.Hour).Format(time.RFC3339), now.Add(time.Hour).Format(time.RFC3339))
	r := do(t, http.MethodGet, url, token, "")
	sum, err := export.Verify(strings.NewReader(r.body), export.WithPublicKeys(keys))
	if err != nil || !sum.SignatureChecked || sum.Head.Rows != n {
		t.Fatalf("the export with the public key: %+v %v", sum, err)
	}
	waitfor.That(t, "the published checkpoints counted", func() bool {
		return strings.Contains(scrape(t, a), `portcullis_controlplane_audit_checkpoints_total{result="published"}`)
	})
}
