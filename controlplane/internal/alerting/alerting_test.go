package alerting_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/portcullis-gw/portcullis/controlplane/internal/alerting"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store/storetest"
	"github.com/portcullis-gw/portcullis/shared/alerts"
	"github.com/portcullis-gw/portcullis/shared/natsbuckets"
	"github.com/portcullis-gw/portcullis/shared/natstest"
	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

// TestRaiseRecordsPublishesAndPosts: an alert is a row in the alerts table, a message
// on PC_ALERTS and a signed webhook with the same body; raising it again (same rule,
// client and dedup key) does none of that a second time.
func TestRaiseRecordsPublishesAndPosts(t *testing.T) {
	ctx := context.Background()
	st, _ := storetest.Open(t)
	ns := natstest.Start(t)
	if err := natsbuckets.Ensure(ctx, ns.JetStream, natsbuckets.Options{}); err != nil {
		t.Fatal(err)
	}
	msgs := make(chan *nats.Msg, 8)
	if _, err := ns.Conn.ChanSubscribe("alerts.>", msgs); err != nil {
		t.Fatal(err)
	}
	if err := ns.Conn.Flush(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var hooks []*http.Request
	var bodies [][]byte
	hook := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		hooks, bodies = append(hooks, r), append(bodies, b)
		mu.Unlock()
	}))
	defer hook.Close()
	secret := []byte("alerter-test-secret-0123456789")
	a := alerting.New(alerting.Options{Store: st, JetStream: ns.JetStream, WebhookURL: hook.URL + "/alerts",
		WebhookSecret: secret, AllowPrivate: true, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer a.Close()

	al := alerting.Alert{Kind: alerts.KindKeyRevoked, Severity: alerts.SeverityCritical, Subject: "openai",
		Message: "provider openai keys revoked", DedupKey: "key_revoked:openai:7", IDPrefix: "key",
		Details: map[string]any{"provider": "openai", "deployments": []string{"openai-eu"}}}
	row, raised, err := a.Raise(ctx, al)
	if err != nil || !raised || row.ID == 0 || row.Kind != alerts.KindKeyRevoked {
		t.Fatalf("Raise = %+v, %v, %v", row, raised, err)
	}
	if _, again, err := a.Raise(ctx, al); err != nil || again {
		t.Fatalf("raising it again: raised %v, %v; want a repeat", again, err)
	}

	listed, err := st.Alerts(ctx, false, 10)
	if err != nil || len(listed) != 1 || listed[0].ID != row.ID || string(listed[0].Details) == "{}" {
		t.Fatalf("alerts table: %+v, %v", listed, err)
	}
	var msg *nats.Msg
	select {
	case msg = <-msgs:
	case <-time.After(5 * time.Second):
		t.Fatal("no PC_ALERTS message")
	}
	got, err := alerts.Decode(msg.Data)
	wantID := "key-" + strconv.FormatInt(row.ID, 10)
	if err != nil || msg.Subject != "alerts.key_revoked.openai" || got.ID != wantID || got.Subject != "openai" {
		t.Fatalf("PC_ALERTS %s: %+v, %v", msg.Subject, got, err)
	}
	waitfor.Within(t, 5*time.Second, "the webhook", func() bool { mu.Lock(); defer mu.Unlock(); return len(hooks) > 0 })
	mu.Lock()
	h, body := hooks[0].Header, bodies[0]
	mu.Unlock()
	ts, _ := strconv.ParseInt(h.Get(alerting.HeaderTimestamp), 10, 64)
	if !alerting.Verify(secret, ts, hook.URL+"/alerts", body, h.Get(alerting.HeaderSignature)) || string(body) != string(msg.Data) ||
		h.Get(alerting.HeaderAlertID) != wantID {
		t.Fatalf("webhook %v %s; want the PC_ALERTS body, signed for its URL", h, body)
	}
	select {
	case m := <-msgs:
		t.Fatalf("a repeat was published: %s", m.Data)
	case <-time.After(300 * time.Millisecond):
	}
	mu.Lock()
	defer mu.Unlock()
	if len(hooks) != 1 {
		t.Fatalf("%d webhooks, want 1", len(hooks))
	}
}
