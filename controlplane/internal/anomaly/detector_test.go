package anomaly_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/portcullis-gw/portcullis/controlplane/internal/alerting"
	"github.com/portcullis-gw/portcullis/controlplane/internal/anomaly"
	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive/chain"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store/storetest"
	"github.com/portcullis-gw/portcullis/shared/alerts"
	"github.com/portcullis-gw/portcullis/shared/audit"
	"github.com/portcullis-gw/portcullis/shared/natsbuckets"
	"github.com/portcullis-gw/portcullis/shared/natstest"
	"github.com/portcullis-gw/portcullis/shared/policy"
	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

var secret = []byte("test-webhook-secret-0123456789")

// webhookCall is one POST the test receiver got.
type webhookCall struct {
	header http.Header
	body   []byte
}

// env is a detector over a real store and an embedded nats-server, with a webhook
// receiver on loopback.
type env struct {
	st       *store.Store
	det      *anomaly.Detector
	alerts   chan *nats.Msg
	webhooks chan webhookCall
	hookURL  string
	notified atomic.Int64
	seq      atomic.Int64
	now      atomic.Pointer[time.Time] // the detector's clock when set; else time.Now
}

// pin sets the detector's clock to now.
func (e *env) pin(now time.Time) { e.now.Store(&now) }

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{alerts: make(chan *nats.Msg, 64), webhooks: make(chan webhookCall, 64)}
	e.st, _ = storetest.Open(t)

	ns := natstest.Start(t)
	nc, js := ns.Conn, ns.JetStream
	if err := natsbuckets.Ensure(ctx, js, natsbuckets.Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.ChanSubscribe("alerts.>", e.alerts); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		e.webhooks <- webhookCall{header: r.Header.Clone(), body: body}
	}))
	t.Cleanup(hook.Close)

	seedPolicy(t, e.st)
	e.hookURL = hook.URL
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	// The receiver is on loopback: private destinations must be allowed.
	al := alerting.New(alerting.Options{Store: e.st, JetStream: js, WebhookURL: hook.URL, WebhookSecret: secret,
		AllowPrivate: true, Log: log})
	t.Cleanup(al.Close)
	e.det = anomaly.New(anomaly.Options{Store: e.st, Alerts: al, Notify: func() { e.notified.Add(1) },
		Interval: 100 * time.Millisecond, Log: log,
		Now: func() time.Time {
			if now := e.now.Load(); now != nil {
				return *now
			}
			return time.Now()
		}})
	return e
}

// run runs the detector until the test ends.
func (e *env) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = e.det.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
}

func seedPolicy(t *testing.T, st *store.Store) {
	t.Helper()
	ctx := context.Background()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("seed: %v", err)
		}
	}
	must(st.Tenants().Create(ctx, policy.Tenant{Name: "acme", DisplayName: "Acme"}))
	must(st.Tiers().Create(ctx, policy.Tier{Name: "default", RequestsPerMinute: 600, TokensPerHour: 10_000_000,
		MaxConcurrentRequests: 5, AllowedModels: []string{"gpt-4o-mini"}, AllowedOperations: policy.Operations}))
	for _, c := range []string{"spiky", "steady", "newbie", "roamer", "blocky"} {
		must(st.Clients().Create(ctx, policy.Client{ClientID: c, Tenant: "acme", Tier: "default", Enabled: true}))
	}
}

// archive archives one event per token count for client, from network net, through
// the real archive path (store.AppendAudit).
func (e *env) archive(t *testing.T, client, net string, ts time.Time, tokens ...int64) {
	t.Helper()
	var events []store.AuditEvent
	for _, n := range tokens {
		ev := audit.Event{V: audit.SchemaVersion, TS: ts.UTC(), RequestID: "req-" + strconv.FormatInt(e.seq.Add(1), 10),
			Region: "eu", Worker: "w1", ClientID: client, TenantID: "acme", Operation: "chat_completions",
			Model: "gpt-4o-mini", TokensIn: n / 2, TokensOut: n - n/2, Status: 200, SourceNet: net}
		b, err := chain.Canonical(ev)
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, store.AuditEvent{Event: ev, JSON: b})
	}
	if _, err := e.st.AppendAudit(context.Background(), "eu", events); err != nil {
		t.Fatalf("archive: %v", err)
	}
}

// history gives client tokensPerHour in each of the days × 24 hours before the
// previous hour: its baseline.
func history(t *testing.T, st *store.Store, client string, now time.Time, days int, tokensPerHour int64) {
	t.Helper()
	prev := now.UTC().Truncate(time.Hour).Add(-time.Hour)
	var rows []store.HourlyUsage
	for h := 1; h <= days*24; h++ {
		rows = append(rows, store.HourlyUsage{Hour: prev.Add(-time.Duration(h) * time.Hour), Region: "eu",
			TenantID: "acme", ClientID: client, Model: "gpt-4o-mini", Requests: 10,
			TokensIn: tokensPerHour / 2, TokensOut: tokensPerHour - tokensPerHour/2})
	}
	if err := st.AddHourlyUsage(context.Background(), rows); err != nil {
		t.Fatal(err)
	}
}

// alertsOf returns the stored alerts of client and kind.
func alertsOf(t *testing.T, st *store.Store, client, kind string) []store.Alert {
	t.Helper()
	all, err := st.Alerts(context.Background(), false, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []store.Alert
	for _, a := range all {
		if a.ClientID == client && a.Kind == kind {
			out = append(out, a)
		}
	}
	return out
}

// receive waits up to 10 s for a message on ch.
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s within 10s", what)
		panic("unreachable")
	}
}

func TestTokenSpikeAlertsAndThrottles(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	now := time.Now().UTC()
	history(t, e.st, "spiky", now, 7, 20_000)
	history(t, e.st, "steady", now, 7, 20_000)
	e.run(t)

	// Usage within the limits: steady at its baseline; a new client (no history),
	// which the rule does not judge, below its fair share (no info alert either).
	e.archive(t, "steady", "", now, 10_000, 10_000)
	e.archive(t, "newbie", "", now, 10_000, 10_000, 10_000)
	// The spike: 150,000 tokens, 7.5× spiky's baseline of 20,000 per hour.
	e.archive(t, "spiky", "", now, 50_000, 50_000, 50_000)
	archived := time.Now()

	waitfor.Within(t, 10*time.Second, "the token_spike alert", func() bool { return len(alertsOf(t, e.st, "spiky", "token_spike")) > 0 })
	t.Logf("alert raised %v after the spike was archived", time.Since(archived).Round(time.Millisecond))

	// PC_ALERTS carries it.
	msg := receive(t, e.alerts, "PC_ALERTS message")
	if msg.Subject != "alerts.token_spike.spiky" {
		t.Fatalf("alert subject %q", msg.Subject)
	}
	a, err := alerts.Decode(msg.Data)
	if err != nil || a.Kind != anomaly.KindTokenSpike || a.Subject != "spiky" || a.Severity != alerts.SeverityCritical {
		t.Fatalf("alert %+v, %v", a, err)
	}

	// The webhook got the same alert, correctly signed.
	call := receive(t, e.webhooks, "webhook")
	ts, err := strconv.ParseInt(call.header.Get(alerting.HeaderTimestamp), 10, 64)
	if err != nil || time.Since(time.Unix(ts, 0)).Abs() > time.Minute {
		t.Fatalf("webhook timestamp %q", call.header.Get(alerting.HeaderTimestamp))
	}
	sig := call.header.Get(alerting.HeaderSignature)
	if !alerting.Verify(secret, ts, e.hookURL, call.body, sig) {
		t.Fatalf("webhook signature %q does not verify", sig)
	}
	if alerting.Verify(secret, ts+1, e.hookURL, call.body, sig) || alerting.Verify([]byte("another-secret-0123456"), ts, e.hookURL, call.body, sig) ||
		alerting.Verify(secret, ts, e.hookURL+"/elsewhere", call.body, sig) {
		t.Fatal("the signature verifies with another timestamp, secret or destination")
	}
	if string(call.body) != string(msg.Data) {
		t.Fatalf("webhook body %s differs from the PC_ALERTS message %s", call.body, msg.Data)
	}

	// The throttle is in the next policy snapshot, time-boxed, at the fair share:
	// min(10,000,000 / 5, 5 × 10,000) = 50,000, above spiky's baseline of 20,000.
	snap, err := e.st.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ov *policy.LimitOverride
	for i := range snap.LimitOverrides {
		if snap.LimitOverrides[i].ClientID == "spiky" {
			ov = &snap.LimitOverrides[i]
		}
	}
	if ov == nil {
		t.Fatalf("no override for spiky in the snapshot: %+v", snap.LimitOverrides)
	}
	if ov.TokensPerHour != 50_000 || ov.SetBy != anomaly.SetBy || ov.Reason != "anomaly: token_spike" {
		t.Fatalf("override %+v", ov)
	}
	if until := time.Until(ov.ExpiresAt); until < 55*time.Minute || until > 61*time.Minute {
		t.Fatalf("override expires at %v, %v from now; want about 60m", ov.ExpiresAt, until)
	}
	if e.notified.Load() == 0 {
		t.Fatal("the policy publisher was not notified")
	}

	// More checks while the spike lasts raise nothing more.
	for range 3 {
		if err := e.det.Check(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(alertsOf(t, e.st, "spiky", "token_spike")); n != 1 {
		t.Fatalf("%d token_spike alerts for spiky, want 1", n)
	}
	for _, c := range []string{"steady", "newbie"} {
		if n := len(alertsOf(t, e.st, c, "token_spike")); n != 0 {
			t.Fatalf("%d token_spike alerts for %s, want none", n, c)
		}
	}

	// Acknowledging.
	id := alertsOf(t, e.st, "spiky", "token_spike")[0].ID
	acked, err := e.st.AckAlert(ctx, id, "admin")
	if err != nil || acked.AcknowledgedAt == nil || *acked.AcknowledgedBy != "admin" {
		t.Fatalf("ack: %+v, %v", acked, err)
	}
	open, err := e.st.Alerts(ctx, true, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range open {
		if a.ID == id {
			t.Fatal("an acknowledged alert is listed as unacknowledged")
		}
	}
}

func TestNewSourceIPFiresOnce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	now := time.Now().UTC()
	// Disable token_spike: only the network rule is under test.
	rec, err := e.st.AnomalyRules().Get(ctx, "token_spike")
	if err != nil {
		t.Fatal(err)
	}
	rec.Entity.Enabled = false
	if _, err := e.st.AnomalyRules().Update(ctx, "token_spike", rec.Revision, rec.Entity); err != nil {
		t.Fatal(err)
	}

	// The client's first network is not news; a second one is, once; a network last
	// used more than 7 days ago is new again.
	e.archive(t, "roamer", "192.0.2.0/24", now.Add(-9*24*time.Hour), 10)
	e.archive(t, "roamer", "198.51.100.0/24", now.Add(-time.Hour), 10)
	e.archive(t, "roamer", "198.51.100.0/24", now, 10)
	e.archive(t, "newbie", "203.0.113.0/24", now, 10) // first network of a new client
	check := func() {
		t.Helper()
		if err := e.det.Check(ctx); err != nil {
			t.Fatal(err)
		}
	}
	check()
	check()
	got := alertsOf(t, e.st, "roamer", "new_source_ip")
	if len(got) != 1 {
		t.Fatalf("%d new_source_ip alerts, want 1: %+v", len(got), got)
	}
	if n := len(alertsOf(t, e.st, "newbie", "new_source_ip")); n != 0 {
		t.Fatalf("a new client's first network raised %d alerts", n)
	}
	msg := receive(t, e.alerts, "PC_ALERTS message")
	if msg.Subject != "alerts.new_source_ip.roamer" {
		t.Fatalf("alert subject %q", msg.Subject)
	}

	e.archive(t, "roamer", "192.0.2.0/24", now, 10)
	check()
	if n := len(alertsOf(t, e.st, "roamer", "new_source_ip")); n != 2 {
		t.Fatalf("a network unused for 9 days raised %d alerts in all, want 2", n)
	}
	e.archive(t, "roamer", "192.0.2.0/24", now, 10)
	e.archive(t, "roamer", "198.51.100.0/24", now, 10)
	check()
	if n := len(alertsOf(t, e.st, "roamer", "new_source_ip")); n != 2 {
		t.Fatalf("known networks raised alerts: %d in all, want 2", n)
	}
}

func TestBlockDisablesClient(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	rec, err := e.st.AnomalyRules().Get(ctx, "token_spike")
	if err != nil {
		t.Fatal(err)
	}
	rec.Entity.Action = store.ActionBlock
	if _, err := e.st.AnomalyRules().Update(ctx, "token_spike", rec.Revision, rec.Entity); err != nil {
		t.Fatal(err)
	}
	// A week of 5,000 tokens an hour: the minimum baseline (10,000) applies, and
	// 60,000 tokens exceed 5× it.
	now := time.Now().UTC()
	history(t, e.st, "blocky", now, 7, 5_000)
	e.run(t)
	e.archive(t, "blocky", "", now, 30_000, 30_000)
	waitfor.Within(t, 10*time.Second, "blocky disabled", func() bool {
		c, err := e.st.Clients().Get(ctx, "blocky")
		return err == nil && !c.Entity.Enabled
	})
	snap, err := e.st.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range snap.Clients {
		if c.ClientID == "blocky" && c.Enabled {
			t.Fatal("the snapshot still has blocky enabled")
		}
	}
	if len(snap.LimitOverrides) != 0 {
		t.Fatalf("block set overrides: %+v", snap.LimitOverrides)
	}
}

// archiveFlagged archives n events of client in the last hour, the first flagged of
// them flagged by the guardrails.
func (e *env) archiveFlagged(t *testing.T, client string, now time.Time, n, flagged int) {
	t.Helper()
	var events []store.AuditEvent
	for i := range n {
		ev := audit.Event{V: audit.SchemaVersion, TS: now.Add(-time.Duration(i) * time.Second).UTC(),
			RequestID: "req-" + strconv.FormatInt(e.seq.Add(1), 10), Region: "eu", Worker: "w1", ClientID: client, TenantID: "acme",
			Operation: "chat_completions", Model: "gpt-4o-mini", TokensIn: 5, TokensOut: 5, Status: 200}
		if i < flagged {
			ev.Flagged = true
			ev.Flags = []audit.Flag{{Family: "pii", Type: "email", Direction: "input", Action: "redact", Count: 1}}
		}
		b, err := chain.Canonical(ev)
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, store.AuditEvent{Event: ev, JSON: b})
	}
	if _, err := e.st.AppendAudit(context.Background(), "eu", events); err != nil {
		t.Fatalf("archive: %v", err)
	}
}

// TestFlagRateAlertsOncePerHour: the seeded flag_rate rule fires for a client with
// more than 20% of at least 20 requests in the last hour flagged, once per hour, and
// not for a client below the share or with too few requests.
func TestFlagRateAlertsOncePerHour(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	now := time.Now().UTC()
	e.archiveFlagged(t, "leaky", now, 30, 10)
	e.archiveFlagged(t, "steady", now, 30, 3)
	e.archiveFlagged(t, "newbie", now, 5, 5)
	for range 2 {
		if err := e.det.Check(ctx); err != nil {
			t.Fatal(err)
		}
	}
	got := alertsOf(t, e.st, "leaky", "flag_rate")
	if len(got) != 1 || !strings.Contains(got[0].Message, "10 of its 30 requests") {
		t.Fatalf("flag_rate alerts of leaky: %+v", got)
	}
	for _, c := range []string{"steady", "newbie"} {
		if n := len(alertsOf(t, e.st, c, "flag_rate")); n != 0 {
			t.Fatalf("%s raised %d flag_rate alerts", c, n)
		}
	}
}
