package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/controlplane/admintest"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/portcullis-gw/portcullis/controlplane/internal/alerting"
	"github.com/portcullis-gw/portcullis/controlplane/internal/anomaly"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/shared/audit"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

// TestTokenSpikeEndToEnd runs the whole path inside one control plane: events on a
// region stream, the ingest and its rollup, the detector, the alert on the admin API
// and the signed webhook, and the throttle in the snapshot published on PC_POLICY.
func TestTokenSpikeEndToEnd(t *testing.T) {
	secret := "end-to-end-webhook-secret"
	hooks := make(chan *http.Request, 8)
	bodies := make(chan []byte, 8)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		hooks <- r
		bodies <- b
	}))
	defer hook.Close()
	secretFile := filepath.Join(t.TempDir(), "webhook-secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, cfg := startApp(t, func(c *Config) {
		c.AuditIngest = true
		c.AnomalyCheckInterval = time.Second
		c.AlertWebhookURL = hook.URL
		c.AlertWebhookSecretFile = secretFile
		c.AlertWebhookAllowPrivate = true // the receiver is on loopback
	})
	token := admintest.Admin(t, "http://"+a.Addr(), cfg.DataDir)
	admin := "http://" + a.Addr() + "/admin/v1"
	for _, c := range []struct{ path, body string }{
		{"/tenants", `{"name":"acme"}`},
		{"/tiers", `{"name":"default","requests_per_minute":600,"tokens_per_hour":10000000,"max_concurrent_requests":5}`},
		{"/clients", `{"client_id":"spiky","tenant":"acme","tier":"default","residency":"global"}`},
	} {
		if r := do(t, http.MethodPost, admin+c.path, token, c.body); r.status != http.StatusCreated {
			t.Fatalf("POST %s: %d %s", c.path, r.status, r.body)
		}
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
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: natsnames.AuditStream("eu"),
		Subjects: []string{"audit.eu.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	// A week of history at 5,000 tokens an hour, enough for the rule to judge the
	// client: the minimum baseline (10,000 tokens an hour) applies, and 60,000 tokens
	// are 6× it.
	now := time.Now().UTC()
	var history []store.HourlyUsage
	for h := 2; h < 2+7*24; h++ {
		history = append(history, store.HourlyUsage{Hour: now.Truncate(time.Hour).Add(-time.Duration(h) * time.Hour),
			Region: "eu", TenantID: "acme", ClientID: "spiky", Model: "gpt-4o-mini", Requests: 1, TokensIn: 2_500, TokensOut: 2_500})
	}
	if err := a.st.AddHourlyUsage(ctx, history); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		e := audit.Event{TS: now, RequestID: fmt.Sprintf("spike-%d", i), Region: "eu", ClientID: "spiky", TenantID: "acme",
			Model: "gpt-4o-mini", TokensIn: 10_000, TokensOut: 10_000, Status: 200}
		b, _ := audit.Encode(e)
		if _, err := js.Publish(ctx, natsnames.AuditSubject("eu", "spiky"), b, jetstream.WithMsgID(e.RequestID)); err != nil {
			t.Fatal(err)
		}
	}

	deadline := time.Now().Add(10 * time.Second)
	var list struct {
		Data []struct {
			ID       int64  `json:"id"`
			Kind     string `json:"kind"`
			ClientID string `json:"client_id"`
		} `json:"data"`
	}
	for len(list.Data) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no alert within 10s of publishing the spike")
		}
		time.Sleep(50 * time.Millisecond)
		r := do(t, http.MethodGet, admin+"/alerts?acknowledged=false", token, "")
		if err := json.Unmarshal([]byte(r.body), &list); err != nil {
			t.Fatalf("alerts: %d %s", r.status, r.body)
		}
	}
	if list.Data[0].Kind != "token_spike" || list.Data[0].ClientID != "spiky" {
		t.Fatalf("alerts %+v", list.Data)
	}

	select {
	case r := <-hooks:
		body := <-bodies
		ts, _ := strconv.ParseInt(r.Header.Get(alerting.HeaderTimestamp), 10, 64)
		if !alerting.Verify([]byte(secret), ts, hook.URL, body, r.Header.Get(alerting.HeaderSignature)) {
			t.Fatal("the webhook's signature does not verify")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no webhook within 10s")
	}

	kv, err := js.KeyValue(ctx, natsnames.PolicyBucket)
	if err != nil {
		t.Fatal(err)
	}
	waitfor.That(t, "the throttle in the published snapshot", func() bool {
		e, err := kv.Get(ctx, natsnames.PolicySnapshotKey)
		if err != nil {
			return false
		}
		s, err := decodePublished(e.Value())
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range s.LimitOverrides {
			// The fair share, min(10,000,000 / 5, 5 × 10,000), is above the baseline.
			if o.ClientID == "spiky" && o.TokensPerHour == 50_000 && o.SetBy == anomaly.SetBy && o.ExpiresAt.After(time.Now()) {
				return true
			}
		}
		return false
	})

	if r := do(t, http.MethodPost, fmt.Sprintf("%s/alerts/%d/ack", admin, list.Data[0].ID), token, ""); r.status != http.StatusOK {
		t.Fatalf("ack: %d %s", r.status, r.body)
	}
}
