package app

import (
	"context"
	"encoding/json"
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

	"github.com/portcullis-gw/portcullis/controlplane/pgtest"
	"github.com/portcullis-gw/portcullis/shared/natsbuckets"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/policy"
	"github.com/portcullis-gw/portcullis/shared/signing"
	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

// startApp starts a control plane on a fresh database, a free port and an embedded
// nats-server on a free port, stopped when the test ends.
func startApp(t testing.TB, tweaks ...func(*Config)) (*App, Config) {
	t.Helper()
	cfg := Config{
		DatabaseURL:        pgtest.Database(t),
		Listen:             "127.0.0.1:0",
		MetricsListen:      "127.0.0.1:0",
		EmbeddedNATSListen: "127.0.0.1:0",
		DataDir:            filepath.Join(t.TempDir(), "data"),
		LogLevel:           "info",
		DevIssuer:          true,
		PublishInterval:    DefaultPublishInterval,
		NATSReplicas:       DefaultNATSReplicas,
		WorkerTTL:          DefaultWorkerTTL,
	}
	for _, tweak := range tweaks {
		tweak(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := Start(ctx, cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
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
	return a, cfg
}

// policyVersion reads the snapshot version in PC_POLICY, or 0 if there is none yet.
func policyVersion(t *testing.T, kv jetstream.KeyValue) int64 {
	t.Helper()
	e, err := kv.Get(context.Background(), natsnames.PolicySnapshotKey)
	if err != nil {
		return 0
	}
	s, err := decodePublished(e.Value())
	if err != nil {
		t.Fatalf("PC_POLICY holds an undecodable snapshot: %v", err)
	}
	return s.Version
}

type httpResult struct {
	status int
	header http.Header
	body   string
}

func do(t testing.TB, method, url, token, body string) httpResult {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return httpResult{resp.StatusCode, resp.Header, string(b)}
}

func TestStartServesAdminAPIAndPublishesPolicy(t *testing.T) {
	a, cfg := startApp(t)
	base := "http://" + a.Addr()

	tokenFile := filepath.Join(cfg.DataDir, "admin-token")
	fi, err := os.Stat(tokenFile)
	if err != nil {
		t.Fatalf("admin token file: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin token file mode %v, want 0600", fi.Mode().Perm())
	}
	raw, _ := os.ReadFile(tokenFile)
	bootstrap := strings.TrimSpace(string(raw))
	token := admintest.Token(t, base, bootstrap, "app-admin", "admin")

	nc, err := nats.Connect(a.NATSURL(), asControlPlane(t, a))
	if err != nil {
		t.Fatalf("connect to %s: %v", a.NATSURL(), err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(context.Background(), natsnames.PolicyBucket)
	if err != nil {
		t.Fatalf("bucket %s: %v", natsnames.PolicyBucket, err)
	}
	st, err := kv.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.History() != natsbuckets.PolicyHistory {
		t.Fatalf("bucket history %d, want %d", st.History(), natsbuckets.PolicyHistory)
	}

	waitfor.That(t, "the first publish", func() bool { return policyVersion(t, kv) > 0 })
	waitfor.That(t, "/readyz 200", func() bool { return do(t, "GET", base+"/readyz", "", "").status == http.StatusOK })
	before := policyVersion(t, kv)

	checks := []struct {
		name, method, path, token, body string
		wantStatus                      int
		wantBody                        string
	}{
		{"healthz", "GET", "/healthz", "", "", 200, `"ok"`},
		{"console placeholder", "GET", "/", "", "", 200, "Portcullis"},
		{"admin needs a token", "GET", "/admin/v1/tenants", "", "", 401, `"unauthorized"`},
		{"admin refuses a wrong token", "GET", "/admin/v1/tenants", "pca_wrong", "", 401, `"unauthorized"`},
		{"the bootstrap token only manages principals", "POST", "/admin/v1/tenants", bootstrap, `{"name":"acme"}`, 403, `"tenants:write"`},
		{"create tenant", "POST", "/admin/v1/tenants", token, `{"name":"acme"}`, 201, `"acme"`},
		{"list tenants", "GET", "/admin/v1/tenants", token, "", 200, `"acme"`},
		{"unknown admin path", "GET", "/admin/v1/nope", token, "", 404, `"not_found"`},
		{"discovery", "GET", "/.well-known/openid-configuration", "", "", 200, a.JWKSURL()},
		{"jwks", "GET", "/.well-known/jwks.json", "", "", 200, `"ES256"`},
		{"mint for unknown client", "POST", "/admin/v1/tokens", token, `{"client_id":"ghost"}`, 422, `"validation_failed"`},
		{"mint needs admin", "POST", "/admin/v1/tokens", "", `{"client_id":"ghost"}`, 401, `"unauthorized"`},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			r := do(t, c.method, base+c.path, c.token, c.body)
			if r.status != c.wantStatus || !strings.Contains(r.body, c.wantBody) {
				t.Fatalf("%s %s = %d %s; want %d containing %s", c.method, c.path, r.status, r.body, c.wantStatus, c.wantBody)
			}
		})
	}

	waitfor.That(t, "the snapshot version to rise after the tenant was created", func() bool {
		return policyVersion(t, kv) > before
	})
	e, _ := kv.Get(context.Background(), natsnames.PolicySnapshotKey)
	snap, err := decodePublished(e.Value())
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Tenants) != 1 || snap.Tenants[0].Name != "acme" {
		t.Fatalf("published tenants %+v, want acme", snap.Tenants)
	}
	if a.PolicyVersion() < snap.Version {
		t.Fatalf("PolicyVersion() = %d, bucket holds %d", a.PolicyVersion(), snap.Version)
	}

	if r := do(t, "GET", base+"/metrics", "", ""); r.status != http.StatusNotFound {
		t.Errorf("the HTTP server answers /metrics with %d, want 404: it is on the metrics listener only", r.status)
	}
	metrics := scrape(t, a)
	for _, want := range []string{
		`portcullis_controlplane_http_requests_total{method="POST",route="/admin/v1/tenants",status="201"}`,
		`portcullis_controlplane_http_requests_total{method="GET",route="/admin/v1/tenants",status="401"}`,
		"portcullis_controlplane_policy_version ",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(metrics, token) || strings.Contains(metrics, bootstrap) {
		t.Fatal("/metrics contains an admin token")
	}
}

func TestDevIssuerOff(t *testing.T) {
	a, cfg := startApp(t, func(c *Config) { c.DevIssuer = false })
	base := "http://" + a.Addr()
	token := admintest.Admin(t, base, cfg.DataDir)
	if r := do(t, "GET", base+"/.well-known/jwks.json", "", ""); r.status != http.StatusNotFound {
		t.Fatalf("JWKS served with the dev issuer off: %d", r.status)
	}
	r := do(t, "POST", base+"/admin/v1/tokens", token, `{"client_id":"x"}`)
	if r.status != http.StatusNotFound || !strings.Contains(r.body, "--dev-issuer") {
		t.Fatalf("mint with the dev issuer off = %d %s", r.status, r.body)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "jwt-signing-key.pem")); err == nil {
		t.Fatal("a signing key was created with the dev issuer off")
	}
}

func TestStopIsIdempotentAndReleasesEverything(t *testing.T) {
	a, cfg := startApp(t)
	token := admintest.Admin(t, "http://"+a.Addr(), cfg.DataDir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 2 {
		if err := a.Stop(ctx); err != nil {
			t.Fatalf("Stop #%d: %v", i+1, err)
		}
	}
	if _, err := http.Get("http://" + a.Addr() + "/healthz"); err == nil {
		t.Fatal("HTTP server still answers after Stop")
	}
	if nc, err := nats.Connect(a.NATSURL(), asControlPlane(t, a), nats.Timeout(time.Second)); err == nil {
		nc.Close()
		t.Fatal("embedded nats-server still accepts connections after Stop")
	}

	// A restart on the same database and data directory keeps the admin token and the
	// signing key.
	tokenBefore, _ := os.ReadFile(filepath.Join(cfg.DataDir, "admin-token"))
	keyBefore, _ := os.ReadFile(filepath.Join(cfg.DataDir, "jwt-signing-key.pem"))
	b, err := Start(ctx, cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	defer b.Stop(ctx)
	tokenAfter, _ := os.ReadFile(filepath.Join(cfg.DataDir, "admin-token"))
	keyAfter, _ := os.ReadFile(filepath.Join(cfg.DataDir, "jwt-signing-key.pem"))
	if len(tokenBefore) == 0 || string(tokenBefore) != string(tokenAfter) {
		t.Fatal("admin token file changed across restart")
	}
	if len(keyBefore) == 0 || string(keyBefore) != string(keyAfter) {
		t.Fatal("signing key changed across restart")
	}
	r := do(t, "GET", "http://"+b.Addr()+"/admin/v1/tenants", token, "")
	if r.status != http.StatusOK {
		t.Fatalf("admin API after restart: %d %s", r.status, r.body)
	}
	var page struct{ Items []json.RawMessage }
	if err := json.Unmarshal([]byte(r.body), &page); err != nil {
		t.Fatal(err)
	}
}

func TestStartFailsCleanlyOnUnreachableDatabase(t *testing.T) {
	cfg := Config{
		DatabaseURL:        "postgres://postgres@127.0.0.1:1/nothing?connect_timeout=2",
		Listen:             "127.0.0.1:0",
		EmbeddedNATSListen: "127.0.0.1:0",
		DataDir:            t.TempDir(),
		LogLevel:           "info",
		PublishInterval:    DefaultPublishInterval,
		NATSReplicas:       DefaultNATSReplicas,
		WorkerTTL:          DefaultWorkerTTL,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if a, err := Start(ctx, cfg, slog.New(slog.NewJSONHandler(io.Discard, nil))); err == nil {
		_ = a.Stop(ctx)
		t.Fatal("Start succeeded without a database")
	}
}

// decodePublished decodes a snapshot the control plane published, without checking
// its seal (TestPublishedSnapshotsAreSigned does).
func decodePublished(value []byte) (*policy.Snapshot, error) {
	_, _, encoded, err := policy.Unseal(value)
	if err != nil {
		return nil, err
	}
	return policy.Decode(encoded)
}

// TestPublishedSnapshotsAreSigned: every snapshot in PC_POLICY is sealed by the
// policy signing key, whose public key is where PolicyPublicKeyFile says, and the
// key is kept across restarts.
func TestPublishedSnapshotsAreSigned(t *testing.T) {
	a, cfg := startApp(t)
	nc, err := nats.Connect(a.NATSURL(), asControlPlane(t, a))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(context.Background(), natsnames.PolicyBucket)
	if err != nil {
		t.Fatal(err)
	}
	waitfor.That(t, "a published snapshot", func() bool { return policyVersion(t, kv) > 0 })
	keys, err := signing.LoadPublicKeys(a.PolicyPublicKeyFile())
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(context.Background(), natsnames.PolicySnapshotKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := policy.DecodeSigned(e.Value(), keys); err != nil {
		t.Fatalf("the published snapshot does not verify against %s: %v", a.PolicyPublicKeyFile(), err)
	}
	if info, err := os.Stat(filepath.Join(cfg.DataDir, "policy-signing-key.pem")); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("the signing key file: %v", err)
	}
}
