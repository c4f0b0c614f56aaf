// Package e2e runs the whole gateway in one process: a control plane on a real
// Postgres with its embedded nats-server, two regional data planes and one mock
// upstream per region, all over real HTTP on loopback. The stack is package stack's,
// the one make run and the benchmark use too.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	cpapp "github.com/portcullis-gw/portcullis/controlplane/app"
	"github.com/portcullis-gw/portcullis/controlplane/changelog"
	"github.com/portcullis-gw/portcullis/controlplane/devoidc"
	"github.com/portcullis-gw/portcullis/controlplane/pgtest"
	dpapp "github.com/portcullis-gw/portcullis/dataplane/app"
	"github.com/portcullis-gw/portcullis/shared/logtest"
	"github.com/portcullis-gw/portcullis/shared/natsauth"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/natstest"
	"github.com/portcullis-gw/portcullis/shared/vaulttest"
	"github.com/portcullis-gw/portcullis/shared/waitfor"
	"github.com/portcullis-gw/portcullis/tests/mockupstream"
	teststack "github.com/portcullis-gw/portcullis/tests/stack"
	"github.com/portcullis-gw/portcullis/vaultclient"
)

// stack is one running gateway. Its fields are read-only after startStack.
type stack struct {
	cp         *cpapp.App
	st         *teststack.Stack
	nats       *natstest.Server      // the nats-server the stack uses, when the test owns it (withNATS)
	dp         map[string]*dpapp.App // by worker name; the default workers are named after their regions
	upstream   map[string]*mockupstream.Server
	upURL      map[string]string
	adminURL   string
	adminToken string
	keyFile    string
	// keyPaths, with withVault, are the Vault KV paths of the openai deployments'
	// keys, by region; seed makes them key_source vault.
	keyPaths map[string]string
	logs     *logtest.Buffer // every component's log lines, with withLogs
	// auditKey keys the data planes' prompt and response hashes.
	auditKey []byte
	dbURL    string
	dataDir  string            // the control plane's: its dev issuer's signing key is there
	oidc     *devoidc.Provider // with withOIDC
	// openAIAdminURL is the control plane's OpenAI admin API: a listener of its own
	// that hands every request to the eu mock upstream (which speaks the admin API
	// subset), never a deployment's base_url.
	openAIAdminURL string
	// clock is every data plane's limiter clock: the wall clock shifted to read two
	// seconds past an hour when the stack starts, so that no minute or hour window
	// turns during a test (each is well under a minute) and none waits for one to.
	clock func() time.Time

	// writes are the admin writes the test made through admin that succeeded, each
	// to be found in the change history when the test ends (checkChangeHistory).
	writesMu sync.Mutex
	writes   []adminWrite
}

// adminWrite is one successful admin write: method, path and the X-Request-Id the
// control plane gave it.
type adminWrite struct{ method, path, requestID string }

func quietLogger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(io.Discard, nil))
}

// worker is one data plane of a stack.
type worker struct {
	name, region string
	failPolicy   string // "" is the default, fail_closed
	// trustedProxies is its PORTCULLIS_TRUSTED_PROXIES ("" trusts none).
	trustedProxies string
}

// stackConfig is what startStack's options change.
type stackConfig struct {
	// anomaly, when set, runs the control plane's anomaly detector every second,
	// with this webhook.
	anomaly  *anomalyConfig
	vault    *vaulttest.Vault // keys come from this Vault
	logs     bool             // collect every component's logs (debug level) in stack.logs
	ownNATS  bool             // the test runs the nats-server, so it can stop it
	workers  []worker
	upstream map[string]mockupstream.Options // by region
	// oidcPassword, when set, starts the dev OIDC provider with the demo people
	// (this password each) and signs people in to the control plane through it.
	oidcPassword string
}

// withOIDC starts the dev OIDC provider with make run's demo people, each with
// password, and points the control plane at it (stack.oidc).
func withOIDC(password string) stackOption { return func(c *stackConfig) { c.oidcPassword = password } }

type stackOption func(*stackConfig)

// withNATS runs the nats-server in the test instead of embedded in the control
// plane, so the test can stop it (stack.nats).
func withNATS() stackOption { return func(c *stackConfig) { c.ownNATS = true } }

// withVault gives the control plane and every data plane v, logged in with its root
// token from a file, and makes seed store the openai deployments' keys there.
func withVault(v *vaulttest.Vault) stackOption { return func(c *stackConfig) { c.vault = v } }

type anomalyConfig struct{ webhookURL, secretFile string }

// withAnomaly runs the anomaly detector every second, posting alerts to webhookURL
// signed with the key in secretFile.
func withAnomaly(webhookURL, secretFile string) stackOption {
	return func(c *stackConfig) { c.anomaly = &anomalyConfig{webhookURL, secretFile} }
}

// withLogs collects every component's log lines, at debug level, in stack.logs.
func withLogs() stackOption { return func(c *stackConfig) { c.logs = true } }

// withWorkers replaces the default data planes (one per region, named after it).
func withWorkers(ws ...worker) stackOption { return func(c *stackConfig) { c.workers = ws } }

// withUpstream sets the options of region's mock upstream (its Name is kept).
func withUpstream(region string, o mockupstream.Options) stackOption {
	return func(c *stackConfig) { c.upstream[region] = o }
}

// startStack starts a control plane with the dev issuer and, by default, two data
// planes, eu and us, each with a mock upstream in its region, with package stack.
func startStack(t *testing.T, opts ...stackOption) *stack {
	t.Helper()
	ctx := context.Background()
	dataDir := t.TempDir()
	sc := stackConfig{
		workers:  []worker{{name: "eu", region: "eu"}, {name: "us", region: "us"}},
		upstream: map[string]mockupstream.Options{},
	}
	for _, o := range opts {
		o(&sc)
	}
	cpCfg := cpapp.Config{
		DatabaseURL:     pgtest.Database(t),
		DataDir:         dataDir,
		DevIssuer:       true,
		PublishInterval: 30 * time.Second,
		NATSReplicas:    cpapp.DefaultNATSReplicas,
		WorkerTTL:       cpapp.DefaultWorkerTTL,
		LogLevel:        "error",
		AuditIngest:     true,
	}
	cpCfg.AuditCheckpointInterval = time.Second // each region's audit chain head signed and published on PC_CHECKPOINTS
	logger := func(string) *slog.Logger { return quietLogger() }
	var logs *logtest.Buffer
	if sc.logs {
		logs = &logtest.Buffer{}
		cpCfg.LogLevel = "debug"
		logger = func(component string) *slog.Logger {
			return slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("component", component)
		}
	}
	var vaultCfg vaultclient.Config
	if sc.vault != nil {
		tokenFile := filepath.Join(t.TempDir(), "vault-token")
		if err := os.WriteFile(tokenFile, []byte(sc.vault.Token), 0o600); err != nil {
			t.Fatal(err)
		}
		vaultCfg = vaultclient.Config{Addr: sc.vault.Addr, Auth: vaultclient.AuthToken, TokenFile: tokenFile}
		cpCfg.Vault = vaultCfg
		cpCfg.RotationCheckInterval = time.Hour // rotations in these tests are asked for, not detected
	}
	if sc.anomaly != nil {
		cpCfg.AnomalyCheckInterval = time.Second
		cpCfg.AlertWebhookURL, cpCfg.AlertWebhookSecretFile = sc.anomaly.webhookURL, sc.anomaly.secretFile
		cpCfg.AlertWebhookAllowPrivate = true // the tests' receivers are on loopback
	}
	var idp *devoidc.Provider
	if sc.oidcPassword != "" {
		var err error
		if idp, err = devoidc.Start("127.0.0.1:0", devoidc.DemoPeople(sc.oidcPassword)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = idp.Stop() })
		secret := filepath.Join(t.TempDir(), "oidc-secret")
		if err := os.WriteFile(secret, []byte(idp.ClientSecret()+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cpCfg.OIDC = cpapp.OIDCConfig{Issuer: idp.Issuer(), ClientID: idp.ClientID(), ClientSecretFile: secret,
			Scopes: "email,profile,groups", RoleClaim: "groups", RoleMap: devoidc.RoleMap, NameClaim: "email"}
	}
	adminAPI := &openAIAdminFront{}
	adminSrv := httptest.NewServer(adminAPI)
	t.Cleanup(adminSrv.Close)
	cpCfg.OpenAIAdminURL = adminSrv.URL
	var ns *natstest.Server
	var natsAuth *natsauth.Authority // the test's own nats-server's operator (withNATS)
	if sc.ownNATS {
		var err error
		if natsAuth, err = natsauth.LoadOrCreate(filepath.Join(t.TempDir(), "nats-auth")); err != nil {
			t.Fatal(err)
		}
		ns = natstest.StartWith(t, natstest.Options{NoConn: true, Configure: natsAuth.Configure})
		cpCfg.NATSURL = ns.URL()
		if cpCfg.NATSCreds, err = natsAuth.WriteCreds(natsauth.ControlPlane()); err != nil {
			t.Fatal(err)
		}
	}

	auditKey := []byte(fmt.Sprintf("e2e-audit-key-%032d", time.Now().UnixNano()))
	auditKeyFile := filepath.Join(t.TempDir(), "audit.key")
	if err := os.WriteFile(auditKeyFile, auditKey, 0o600); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "openai.key")
	if err := os.WriteFile(keyFile, []byte("test-upstream-key-"+fmt.Sprint(time.Now().UnixNano())), 0o600); err != nil {
		t.Fatal(err)
	}
	keyDir := filepath.Dir(keyFile) // PORTCULLIS_KEY_DIR of both planes: key_source file only there
	cpCfg.KeyDir = keyDir
	so := teststack.Options{LogDir: t.TempDir(), Logger: logger, ControlPlane: &cpCfg, NATSAuth: natsAuth}
	for _, region := range []string{"eu", "us"} {
		uo := sc.upstream[region]
		uo.Name = "mock-" + region
		if uo.RecordLimit == 0 {
			uo.RecordLimit = mockupstream.RecordAll // some tests look at more requests than the default ring keeps
		}
		so.Upstreams = append(so.Upstreams, teststack.UpstreamOptions{Name: region, Mock: uo})
	}
	start := time.Now()
	offset := start.Truncate(time.Hour).Add(time.Hour + 2*time.Second).Sub(start)
	clock := func() time.Time { return time.Now().Add(offset) }
	for _, w := range sc.workers {
		so.DataPlanes = append(so.DataPlanes, teststack.DataPlaneOptions{Name: w.name, Config: dpapp.Config{
			Region:               w.region,
			LogLevel:             "error",
			WorkerID:             "e2e-" + w.name,
			ExposeRoutingHeaders: true,
			MaxBodyBytes:         4 << 20,
			LimitsFailPolicy:     w.failPolicy,
			// Tests share two cores under -race: one PC_LIMITS operation over the
			// default 2 s bound marks the counters unreachable until the next
			// heartbeat, and fail_closed refuses every request meanwhile.
			LimitsKVTimeout: 5 * time.Second,
			TrustedProxies:  w.trustedProxies,
			Vault:           vaultCfg,
			AuditSpoolDir:   filepath.Join(t.TempDir(), "audit-spool"),
			AuditKeyFile:    auditKeyFile,
			Clock:           clock,
			KeyDir:          keyDir,
			// Every upstream of these tests listens on loopback: the mocks, and the
			// servers some tests add (the hostile suite's).
			EgressAllowHosts: "127.0.0.1",
		}})
	}
	st, err := teststack.Start(ctx, so)
	if err != nil {
		t.Fatalf("start the stack: %v", err)
	}
	t.Cleanup(func() { stopWithin(t, st.Stop) })

	if idp != nil {
		idp.AllowRedirect(st.AdminURL + "/auth/callback")
	}
	s := &stack{
		oidc:       idp,
		cp:         st.ControlPlane,
		st:         st,
		nats:       ns,
		dp:         map[string]*dpapp.App{},
		upstream:   map[string]*mockupstream.Server{},
		upURL:      map[string]string{},
		adminURL:   st.AdminURL,
		adminToken: st.AdminToken,
		keyFile:    keyFile,
		clock:      clock,
		logs:       logs,
		auditKey:   auditKey,
		dbURL:      cpCfg.DatabaseURL,
		dataDir:    dataDir,
	}
	if sc.vault != nil {
		s.keyPaths = map[string]string{}
		for _, region := range []string{"eu", "us"} {
			s.keyPaths[region] = "secret/" + sc.vault.Unique("portcullis/openai-"+region)
		}
	}
	for _, region := range []string{"eu", "us"} {
		up := st.Upstream(region)
		s.upstream[region], s.upURL[region] = up.Mock, up.URL
	}
	adminAPI.mock.Store(s.upstream["eu"])
	s.openAIAdminURL = adminSrv.URL
	for _, d := range st.DataPlanes() {
		s.dp[d.Name] = d.App
	}
	if s.cp != nil {
		t.Cleanup(func() { s.checkChangeHistory(t) }) // runs before the stack stops
	}
	return s
}

// checkChangeHistory checks, as a test ends, that each admin write it made is in
// the change history by the stack's administrator, with its before and after, and
// that the history's chain verifies.
func (s *stack) checkChangeHistory(t *testing.T) {
	if t.Failed() {
		return
	}
	req, _ := http.NewRequest(http.MethodGet, s.adminURL+"/admin/v1/changes/export", nil)
	req.Header.Set("Authorization", "Bearer "+s.adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("change history export: %v", err)
		return
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("change history export: %d %s", resp.StatusCode, raw)
		return
	}
	var records []changelog.Record
	byRequest := map[string][]changelog.Record{}
	for _, line := range bytes.Split(bytes.TrimSpace(raw), []byte("\n")) {
		var r changelog.Record
		if err := json.Unmarshal(line, &r); err != nil {
			t.Errorf("change history line %q: %v", line, err)
			return
		}
		records = append(records, r)
		byRequest[r.RequestID] = append(byRequest[r.RequestID], r)
	}
	if _, err := changelog.Verify(records); err != nil {
		t.Errorf("the change history's chain: %v", err)
	}
	s.writesMu.Lock()
	defer s.writesMu.Unlock()
	for _, w := range s.writes {
		rs := byRequest[w.requestID]
		if len(rs) == 0 {
			t.Errorf("%s %s (request %s) is not in the change history", w.method, w.path, w.requestID)
			continue
		}
		for _, r := range rs {
			if r.Principal != "stack-admin" || r.Roles != "admin" || !strings.HasPrefix(r.Credential, "token:") {
				t.Errorf("%s %s is recorded as %s (%s, %s)", w.method, w.path, r.Principal, r.Roles, r.Credential)
			}
			if w.method != http.MethodDelete && isNull(r.After) {
				t.Errorf("%s %s is recorded without its after: %+v", w.method, w.path, r)
			}
			if (w.method == http.MethodPatch || w.method == http.MethodDelete) && isNull(r.Before) {
				t.Errorf("%s %s is recorded without its before: %+v", w.method, w.path, r)
			}
		}
	}
}

func isNull(b json.RawMessage) bool { return len(b) == 0 || string(b) == "null" }

// openAIAdminFront is the stack's OpenAI admin API: it hands each request to mock, the
// eu upstream, once it is set, on a listener apart from every base_url.
type openAIAdminFront struct {
	mock atomic.Pointer[mockupstream.Server]
}

func (f *openAIAdminFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m := f.mock.Load()
	if m == nil {
		http.Error(w, "the admin API is not up yet", http.StatusServiceUnavailable)
		return
	}
	m.ServeHTTP(w, r)
}

// natsConnect connects to the stack's nats-server as role r, until the test ends.
func (s *stack) natsConnect(t *testing.T, r natsauth.Role, opts ...nats.Option) *nats.Conn {
	t.Helper()
	creds, err := s.st.NATSCreds(r)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(s.cp.NATSURL(), append([]nats.Option{nats.UserCredentials(creds),
		nats.CustomInboxPrefix(natsnames.InboxPrefix(r.Name))}, opts...)...)
	if err != nil {
		t.Fatalf("connect to NATS as %s: %v", r.Name, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// restartNATS starts the test-owned nats-server again (withNATS) on its address and
// store, after the test stopped it.
func (s *stack) restartNATS(t *testing.T) {
	t.Helper()
	s.nats.Restart()
}

func stopWithin(t *testing.T, stop func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := stop(ctx); err != nil {
		t.Errorf("stop: %v", err)
	}
}

// admin calls the control plane's admin API and decodes a JSON answer into out (if
// non-nil). It returns the status and headers.
func (s *stack) admin(t *testing.T, method, path string, body any, out any, header ...string) (int, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, s.adminURL+"/admin/v1"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.adminToken)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if method != http.MethodGet && method != http.MethodHead && resp.StatusCode/100 == 2 {
		s.writesMu.Lock()
		s.writes = append(s.writes, adminWrite{method, path, resp.Header.Get("X-Request-Id")})
		s.writesMu.Unlock()
	}
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: decode %q: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode, resp.Header
}

// mustAdmin is admin that fails the test unless the status is want.
func (s *stack) mustAdmin(t *testing.T, want int, method, path string, body any) {
	t.Helper()
	var out json.RawMessage
	if got, _ := s.admin(t, method, path, body, &out); got != want {
		t.Fatalf("%s %s = %d, want %d: %s", method, path, got, want, out)
	}
}

// patch updates one admin resource with its current ETag.
func (s *stack) patch(t *testing.T, path string, body any) {
	t.Helper()
	status, h := s.admin(t, http.MethodGet, path, nil, nil)
	if status != http.StatusOK {
		t.Fatalf("GET %s = %d", path, status)
	}
	var out json.RawMessage
	if got, _ := s.admin(t, http.MethodPatch, path, body, &out, "If-Match", h.Get("ETag")); got != http.StatusOK {
		t.Fatalf("PATCH %s = %d: %s", path, got, out)
	}
}

// seed creates the fixture every test starts from: tenant demo, residency rules
// eu→[eu] and us→[us], one OpenAI deployment per region pointing at that region's
// mock upstream, the seed document's default and analytics tiers, and three clients.
func (s *stack) seed(t *testing.T) {
	t.Helper()
	s.mustAdmin(t, 201, "POST", "/tenants", map[string]any{"name": "demo"})
	for _, region := range []string{"eu", "us"} {
		s.mustAdmin(t, 201, "POST", "/residency-rules", map[string]any{"residency": region, "allowed_regions": []string{region},
			"endpoint_url": "https://" + region + ".gateway.example"})
	}
	s.mustAdmin(t, 201, "POST", "/providers", map[string]any{"name": "openai", "kind": "openai"})
	for _, region := range []string{"eu", "us"} {
		dep := map[string]any{
			"name": "openai-" + region, "provider": "openai", "region": region, "kind": "cloud",
			"base_url": s.upURL[region], "key_source": "file", "key_path": s.keyFile,
		}
		if s.keyPaths != nil {
			dep["key_source"], dep["key_path"] = "vault", s.keyPaths[region]
		}
		s.mustAdmin(t, 201, "POST", "/deployments", dep)
		for _, m := range []string{"gpt-4o", "gpt-4o-mini", "text-embedding-3-small"} {
			s.mustAdmin(t, 201, "POST", "/models", map[string]any{
				"name": m, "deployment": "openai-" + region, "upstream_model": m,
			})
		}
	}
	s.mustAdmin(t, 201, "POST", "/tiers", map[string]any{
		"name": "default", "requests_per_minute": 60, "tokens_per_hour": 100000, "max_concurrent_requests": 5,
		"allowed_models": []string{"gpt-4o-mini", "text-embedding-3-small"}, "default_max_tokens": 1024,
	})
	s.mustAdmin(t, 201, "POST", "/tiers", map[string]any{
		"name": "service_account_analytics", "requests_per_minute": 30, "tokens_per_hour": 50000, "max_concurrent_requests": 3,
		"allowed_models": []string{"gpt-4o-mini"}, "allowed_operations": []string{"completion"}, "default_max_tokens": 1024,
	})
	s.mustAdmin(t, 201, "POST", "/clients", map[string]any{"client_id": "eu-app", "tenant": "demo", "tier": "default", "residency": "eu"})
	s.mustAdmin(t, 201, "POST", "/clients", map[string]any{"client_id": "global-app", "tenant": "demo", "tier": "default", "residency": "global"})
	s.mustAdmin(t, 201, "POST", "/clients", map[string]any{"client_id": "analytics-svc", "tenant": "demo", "tier": "service_account_analytics", "residency": "global"})
}

// mint asks the control plane's dev issuer for a token for clientID.
// adminRaw is the body of an admin API GET, which must answer 200.
func (s *stack) adminRaw(t *testing.T, path string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.adminURL+"/admin/v1"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v %.300s", path, resp.StatusCode, err, b)
	}
	return string(b)
}

func (s *stack) mint(t *testing.T, clientID string) string {
	t.Helper()
	var out struct {
		Token string `json:"token"`
	}
	if status, _ := s.admin(t, "POST", "/tokens", map[string]any{"client_id": clientID}, &out); status != http.StatusOK && status != http.StatusCreated {
		t.Fatalf("mint token for %s: status %d", clientID, status)
	}
	if strings.Count(out.Token, ".") != 2 {
		t.Fatalf("mint token for %s: not a JWT", clientID)
	}
	return out.Token
}

// gatewayResponse is one answer of a data plane.
type gatewayResponse struct {
	Status int
	Header http.Header
	Body   []byte
}

// code returns the OpenAI error code in the body, or "".
func (r gatewayResponse) code() string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(r.Body, &e)
	return e.Error.Code
}

// call sends one request to the data plane named worker.
func (s *stack) call(t *testing.T, worker, token, method, path string, body any) gatewayResponse {
	t.Helper()
	return s.send(t, worker, token, "", method, path, body)
}

// callWithID is a chat completion call carrying the request id id, which the
// gateway passes on to the upstream.
func (s *stack) callWithID(t *testing.T, worker, token, id string, body any) gatewayResponse {
	t.Helper()
	return s.send(t, worker, token, id, "POST", "/v1/chat/completions", body)
}

func (s *stack) send(t *testing.T, worker, token, id, method, path string, body any) gatewayResponse {
	t.Helper()
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, "http://"+s.dp[worker].Addr()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	if id != "" {
		req.Header.Set("X-Request-Id", id)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s on %s: %v", method, path, worker, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return gatewayResponse{Status: resp.StatusCode, Header: resp.Header, Body: raw}
}

func chatBody(model string) map[string]any {
	return map[string]any{"model": model, "messages": []map[string]string{{"role": "user", "content": "hello"}}}
}

// waitReady waits until every data plane has the seeded policy (analytics-svc, the
// last client seed creates, is known everywhere) and reaches its limit counters.
func (s *stack) waitReady(t *testing.T) {
	t.Helper()
	token := s.mint(t, "analytics-svc")
	for name, dp := range s.dp {
		waitfor.Within(t, 10*time.Second, name+" data plane has the seeded policy", func() bool {
			return s.call(t, name, token, "GET", "/v1/models", nil).Status == http.StatusOK
		})
		waitfor.Within(t, 10*time.Second, name+" data plane is ready", func() bool {
			resp, err := http.Get("http://" + dp.Addr() + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
	}
}
