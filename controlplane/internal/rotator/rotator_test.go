package rotator_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/portcullis-gw/portcullis/controlplane/internal/rotator"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store/storetest"
	"github.com/portcullis-gw/portcullis/shared/alerts"
	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/keyevents"
	"github.com/portcullis-gw/portcullis/shared/logtest"
	"github.com/portcullis-gw/portcullis/shared/natsbuckets"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/natstest"
	"github.com/portcullis-gw/portcullis/shared/policy"
	"github.com/portcullis-gw/portcullis/shared/vaulttest"
	"github.com/portcullis-gw/portcullis/vaultclient"
)

// env is a rotator over a real Postgres, Vault and nats-server, with a clock the
// test moves, and a recorder of what it publishes on PC_KEYS and PC_ALERTS.
type env struct {
	st    *store.Store
	v     *vaulttest.Vault
	vc    *vaultclient.Client
	js    jetstream.JetStream
	r     *rotator.Rotator
	opts  rotator.Options // r's
	logs  *logtest.Buffer
	now   time.Time
	clock sync.Mutex

	mu     sync.Mutex
	events []keyevents.Event
	alerts []alerts.Alert
}

// newEnv starts an env; opts change the rotator's options.
func newEnv(t *testing.T, opts ...func(*rotator.Options)) *env {
	t.Helper()
	e := &env{v: vaulttest.Start(t), logs: &logtest.Buffer{}, now: time.Now().UTC().Truncate(time.Second)}
	e.st, _ = storetest.Open(t)
	ns := natstest.Start(t)
	nc := ns.Conn
	e.js = ns.JetStream
	if err := natsbuckets.Ensure(context.Background(), e.js, natsbuckets.Options{}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(e.logs, nil))
	var err error
	if e.vc, err = vaultclient.New(context.Background(), vaultclient.Config{Addr: e.v.Addr, Auth: vaultclient.AuthToken, Token: e.v.Token}, log); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.vc.Close)
	e.opts = rotator.Options{Store: e.st, Vault: e.vc, JetStream: e.js, Actor: "cp-test", Log: log,
		Now: func() time.Time { e.clock.Lock(); defer e.clock.Unlock(); return e.now }}
	for _, o := range opts {
		o(&e.opts)
	}
	e.r = rotator.New(e.opts)
	for subj, record := range map[string]func([]byte){
		"keys.rotated.>": e.recordEvent, "keys.revoked.>": e.recordEvent,
		natsnames.AlertsSubjects: func(b []byte) {
			a, err := alerts.Decode(b)
			if err != nil {
				t.Errorf("alert: %v", err)
			}
			e.mu.Lock()
			e.alerts = append(e.alerts, a)
			e.mu.Unlock()
		},
	} {
		sub, err := nc.Subscribe(subj, func(m *nats.Msg) { record(m.Data) })
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	t.Cleanup(func() {
		if strings.Contains(e.logs.String(), "canary") {
			t.Error("a key value reached the log")
		}
	})
	return e
}

func (e *env) recordEvent(b []byte) {
	ev, err := keyevents.DecodeEvent(b)
	if err != nil {
		panic(err)
	}
	e.mu.Lock()
	e.events = append(e.events, ev)
	e.mu.Unlock()
}

func (e *env) advance(d time.Duration) {
	e.clock.Lock()
	e.now = e.now.Add(d)
	e.clock.Unlock()
}

// waitEvents waits until n key events were received and returns them.
func (e *env) waitEvents(t *testing.T, n int) []keyevents.Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		e.mu.Lock()
		got := append([]keyevents.Event(nil), e.events...)
		e.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("received %d key events, want %d", len(got), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *env) deployment(t *testing.T, d policy.Deployment) {
	t.Helper()
	ctx := context.Background()
	if _, err := e.st.Providers().Put(ctx, policy.Provider{Name: d.Provider, Kind: policy.ProviderOpenAI}); err != nil {
		t.Fatal(err)
	}
	if d.BaseURL == "" {
		d.BaseURL = "http://127.0.0.1:1"
	}
	d.Region, d.Kind, d.TLS.Verify, d.Enabled = "eu", policy.KindCloud, true, true
	d.TimeoutSeconds, d.TotalTimeoutSeconds, d.ConnectTimeoutSeconds = 30, 600, 10
	d.Retry, d.CircuitBreaker = policy.Retry{MaxAttempts: 1, Backoff: "constant"}, policy.CircuitBreaker{FailureThreshold: 5, ResetTimeoutSeconds: 60, HalfOpenMaxRequests: 1}
	if _, err := e.st.Deployments().Put(ctx, d); err != nil {
		t.Fatal(err)
	}
}

func TestVaultVersionRotationOverlapRetireAndRevoke(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	path := "secret/" + e.v.Unique("portcullis/openai-eu")
	e.deployment(t, policy.Deployment{Name: "openai-eu", Provider: "openai", KeySource: policy.KeySourceVault, KeyPath: path,
		RotationIntervalDays: 30, RotationOverlapHours: 2})
	if _, err := e.vc.WriteKV(ctx, path, "canary-1", 0); err != nil {
		t.Fatal(err)
	}

	// First sight: a baseline, no event.
	e.r.Check(ctx)
	if last, ok, _ := e.st.LastRotation(ctx, "openai-eu"); !ok || *last.NewVersion != 1 || last.Trigger != store.TriggerDetected || last.RetiredAt == nil {
		t.Fatalf("baseline: %+v, %v", last, ok)
	}

	// Rotating with no new version says what to do.
	_, err := e.r.Rotate(ctx, rotator.Request{Provider: "openai", Actor: "admin"})
	if ae := apierr.From(err); ae.Code != apierr.NoNewKeyVersion || !strings.Contains(ae.Message, "vault kv put") {
		t.Fatalf("rotate without a new version: %v", err)
	}
	// A rotation of an unknown provider is a 404.
	if _, err := e.r.Rotate(ctx, rotator.Request{Provider: "nobody"}); apierr.From(err).Code != apierr.NotFound {
		t.Fatalf("unknown provider: %v", err)
	}

	// An operator writes version 2; the rotator detects it and rotates with overlap.
	if _, err := e.vc.WriteKV(ctx, path, "canary-2", 1); err != nil {
		t.Fatal(err)
	}
	e.r.Check(ctx)
	ev := e.waitEvents(t, 1)[0]
	if ev.Kind != keyevents.KindRotated || ev.KeyVersion != 2 || ev.PreviousVersion != 1 || !ev.OverlapUntil.Equal(e.now.Add(2*time.Hour)) {
		t.Fatalf("rotation event %+v", ev)
	}
	meta, _ := e.vc.ReadKVMeta(ctx, path)
	if meta.Previous != 1 || !meta.PreviousValidUntil.Equal(e.now.Add(2*time.Hour)) {
		t.Fatalf("overlap not recorded in vault: %+v", meta)
	}

	// The overlap ends: the previous version is retired.
	e.advance(2*time.Hour + time.Second)
	e.r.Check(ctx)
	if meta, _ := e.vc.ReadKVMeta(ctx, path); meta.Previous != 0 || !meta.PreviousValidUntil.IsZero() {
		t.Fatalf("overlap still in vault after retirement: %+v", meta)
	}
	if last, _, _ := e.st.LastRotation(ctx, "openai-eu"); last.RetiredAt == nil {
		t.Fatalf("rotation not marked retired: %+v", last)
	}

	// 30 days later the vault_version deployment is due: an alert, once, even when
	// another replica checks the same day.
	e.advance(30 * 24 * time.Hour)
	e.r.Check(ctx)
	e.r.Check(ctx)
	rotator.New(e.opts).Check(ctx)

	// Emergency revoke with no successor written: every version revoked and destroyed.
	rots, err := e.r.Revoke(ctx, rotator.Request{Provider: "openai", Reason: "key_suspected_compromise", Actor: "admin"})
	if err != nil || len(rots) != 1 || rots[0].Kind != keyevents.KindRevoked || *rots[0].OldVersion != 2 || rots[0].NewVersion != nil {
		t.Fatalf("revoke: %+v, %v", rots, err)
	}
	evs := e.waitEvents(t, 2)
	if rev := evs[1]; rev.Kind != keyevents.KindRevoked || rev.PreviousVersion != 2 || rev.KeyVersion != 0 || !rev.OverlapUntil.IsZero() {
		t.Fatalf("revocation event %+v", rev)
	}
	meta, _ = e.vc.ReadKVMeta(ctx, path)
	if !meta.Revoked[1] || !meta.Revoked[2] || !meta.Gone[2] {
		t.Fatalf("revocation not in vault: %+v", meta)
	}
	if _, err := e.vc.ReadKV(ctx, path, 2); err == nil {
		t.Fatal("the revoked version can still be read")
	}

	hist, _ := e.st.Rotations(ctx, "openai-eu", 10)
	if len(hist) != 3 || hist[0].Reason != "key_suspected_compromise" || hist[0].Actor != "admin" {
		t.Fatalf("history %+v", hist)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		e.mu.Lock()
		kinds := []string{}
		for _, a := range e.alerts {
			kinds = append(kinds, a.Kind+":"+a.Subject)
		}
		e.mu.Unlock()
		if strings.Join(kinds, ",") == "key_rotation_due:openai,key_revoked:openai" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alerts %v, want one rotation_due and one key_revoked", kinds)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(e.logs.String(), `"alert":"key_revoked"`) {
		t.Fatal("the revocation was not logged as an alert")
	}
	// Both are in the alerts table (GET /admin/v1/alerts), newest first.
	rows, err := e.st.Alerts(ctx, false, 10)
	if err != nil || len(rows) != 2 || rows[0].Kind != "key_revoked" || rows[1].Kind != "key_rotation_due" ||
		!strings.Contains(string(rows[0].Details), `"openai-eu"`) || rows[0].Severity != "critical" {
		t.Fatalf("alerts table: %+v, %v; want key_revoked then one key_rotation_due", rows, err)
	}
}

func TestRevokeRequiresAVault(t *testing.T) {
	r := rotator.New(rotator.Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	_, err := r.Revoke(context.Background(), rotator.Request{Provider: "openai", Reason: "x"})
	if !errors.Is(err, rotator.ErrNoVault) || apierr.From(err).Code != apierr.VaultUnavailable {
		t.Fatalf("revoke without vault: %v", err)
	}
}
