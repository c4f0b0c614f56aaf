package app_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/shared/audit"
	"github.com/portcullis-gw/portcullis/shared/logtest"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/portcullis-gw/portcullis/dataplane/app"
	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/logging"
	"github.com/portcullis-gw/portcullis/shared/natsbuckets"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/natstest"
	"github.com/portcullis-gw/portcullis/shared/policy"
	"github.com/portcullis-gw/portcullis/shared/testissuer"
	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

// upstreamKey is the dev key file's content in every test.
const upstreamKey = "test-upstream-key-not-secret"

// accessLine returns the decoded access log line whose request_id is id.
func accessLine(t *testing.T, b *logtest.Buffer, id string) map[string]any {
	t.Helper()
	var found map[string]any
	waitfor.That(t, "the access log line of request "+id, func() bool {
		for _, l := range strings.Split(b.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil && (m["request_id"] == id || m["client_request_id"] == id) && m["msg"] == "request" {
				found = m
				return true
			}
		}
		return false
	})
	return found
}

// env is one data plane with everything it talks to: an embedded nats-server with
// the policy bucket, a JWKS-serving issuer, and an OpenAI-speaking spy upstream per
// region.
type env struct {
	iss     *testissuer.Issuer
	spies   map[string]*spy
	keyPath string
	js      jetstream.JetStream
	kv      jetstream.KeyValue
	app     *app.App
	base    string
	logs    *logtest.Buffer
	client  *http.Client
	version int64
	natsURL string
	nats    *natstest.Server
}

type envOptions struct {
	region   string // the worker's region; default "eu"
	noBucket bool   // do not create the bucket nor publish a snapshot
	// quiet logs at info level, the production default, to io.Discard instead of
	// collecting debug lines; benchmarks use it.
	quiet bool
	// configure, if set, changes the data plane's config before it starts.
	configure func(*app.Config)
	// noStreamService leaves the data plane's requests for its audit stream
	// unanswered, as while no control plane runs.
	noStreamService bool
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	if o.region == "" {
		o.region = "eu"
	}
	ns := natstest.Start(t)
	e := &env{
		iss:     testissuer.New(t),
		spies:   map[string]*spy{"eu": newSpy(t, "eu"), "us": newSpy(t, "us")},
		keyPath: filepath.Join(t.TempDir(), "openai-key"),
		logs:    &logtest.Buffer{},
		client:  &http.Client{Transport: &http.Transport{}},
		natsURL: ns.URL(),
		nats:    ns,
	}
	t.Cleanup(e.client.CloseIdleConnections)
	if err := os.WriteFile(e.keyPath, []byte(upstreamKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.js = ns.JetStream
	// The control plane's side: it creates the audit stream a data plane asks for.
	if !o.noStreamService {
		if _, err := audit.ServeStreamCreate(ns.Conn, ns.JetStream, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if !o.noBucket {
		e.createBucket(t)
	}

	cfg := app.Config{
		AuditSpoolDir: filepath.Join(t.TempDir(), "audit-spool"),
		Region:        o.region, Listen: "127.0.0.1:0", NATSURL: ns.URL(),
		JWTIssuer: e.iss.Name, JWTAudience: testissuer.Audience, JWKSURL: e.iss.JWKSURL,
		LogLevel: "debug", WorkerID: "test-" + o.region, ExposeRoutingHeaders: true, MaxBodyBytes: app.DefaultMaxBodyBytes,
		MetricsListen: "127.0.0.1:0", PolicyPublicKeys: policyPublicKeys,
		// Every upstream of these tests (the spies, and the servers some tests add)
		// listens on loopback; the key file lives in its own directory.
		EgressAllowHosts: "127.0.0.1", KeyDir: filepath.Dir(e.keyPath),
	}
	if o.configure != nil {
		o.configure(&cfg)
	}
	var logTo io.Writer = e.logs
	if o.quiet {
		cfg.LogLevel, logTo = "info", io.Discard
	}
	var err error
	e.app, err = app.Start(context.Background(), cfg, logging.New(logTo, cfg.LogLevel))
	if err != nil {
		t.Fatalf("start data plane: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.app.Stop(ctx); err != nil {
			t.Errorf("stop data plane: %v", err)
		}
		if t.Failed() {
			t.Logf("data plane log:\n%s", e.logs.String())
		}
	})
	e.base = "http://" + e.app.Addr()
	if !o.noBucket {
		e.publish(t, e.snapshot())
		waitfor.That(t, "the data plane to be ready (policy and limit counters)", func() bool {
			resp, err := e.client.Get(e.base + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
	}
	return e
}

func (e *env) createBucket(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := natsbuckets.Ensure(ctx, e.js, natsbuckets.Options{}); err != nil {
		t.Fatalf("create buckets: %v", err)
	}
	var err error
	if e.kv, err = e.js.KeyValue(ctx, natsnames.PolicyBucket); err != nil {
		t.Fatalf("open policy bucket: %v", err)
	}
}

// publish puts s with the next version into the bucket and waits until the data
// plane serves it.
func (e *env) publish(t testing.TB, s *policy.Snapshot) {
	t.Helper()
	e.version++
	s.Version = e.version
	b, err := policy.Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	e.putRaw(t, sealed(b))
	waitfor.That(t, "policy version to propagate", func() bool { return e.app.PolicyVersion() == s.Version })
}

func (e *env) putRaw(t testing.TB, value []byte) {
	t.Helper()
	if _, err := e.kv.Put(context.Background(), natsnames.PolicySnapshotKey, value); err != nil {
		t.Fatalf("put snapshot: %v", err)
	}
}

// snapshot is the test policy: the seed's three tiers in miniature, clients with and
// without residency, OpenAI deployments in eu and us (each served by that region's
// spy), and deployments whose provider or key source arrive in later issues.
func (e *env) snapshot() *policy.Snapshot {
	dep := func(name, provider, region, keySource string) policy.Deployment {
		return policy.Deployment{
			Name: name, Provider: provider, Region: region, Kind: policy.KindCloud,
			BaseURL: e.spies[region].srv.URL, KeySource: keySource, KeyPath: e.keyPath,
			TLS: policy.TLS{Verify: true}, TimeoutSeconds: 30, Enabled: true,
			Retry: policy.Retry{MaxAttempts: 3, Backoff: "exponential"}, CircuitBreaker: policy.CircuitBreaker{FailureThreshold: 5, ResetTimeoutSeconds: 60},
		}
	}
	model := func(name, deployment, upstream string) policy.Model {
		return policy.Model{ID: name + "@" + deployment, Name: name, Deployment: deployment, UpstreamModel: upstream}
	}
	return &policy.Snapshot{
		SchemaVersion: policy.SchemaVersion, GeneratedAt: time.Now().UTC(),
		Tenants: []policy.Tenant{{Name: "demo"}},
		Tiers: []policy.Tier{
			{Name: "default", RequestsPerMinute: 60, AllowedModels: []string{"gpt-4o-mini", "text-embedding-3-small"}, AllowedOperations: policy.Operations},
			{Name: "tier_premium", RequestsPerMinute: 600, AllowedModels: []string{"gpt-4o", "gpt-4o-mini", "text-embedding-3-small", "ghost-model", "claude-3-5-sonnet", "vaulted-model"}, AllowedOperations: policy.Operations},
			{Name: "service_account_analytics", RequestsPerMinute: 30, AllowedModels: []string{"gpt-4o-mini"}, AllowedOperations: []string{policy.OpCompletion}},
			{Name: "chat_only", RequestsPerMinute: 30, AllowedModels: []string{"gpt-4o-mini", "claude-3-5-sonnet"}, AllowedOperations: []string{policy.OpChat}},
			{Name: "messages_only", RequestsPerMinute: 30, AllowedModels: []string{"claude-3-5-sonnet"}, AllowedOperations: []string{policy.OpMessages}},
		},
		Clients: []policy.Client{
			{ClientID: "eu-app", Tenant: "demo", Tier: "default", Residency: "eu", Enabled: true},
			{ClientID: "premium-app", Tenant: "demo", Tier: "tier_premium", Enabled: true},
			{ClientID: "analytics-svc", Tenant: "demo", Tier: "service_account_analytics", Enabled: true},
			{ClientID: "chat-only-app", Tenant: "demo", Tier: "chat_only", Enabled: true},
			{ClientID: "messages-app", Tenant: "demo", Tier: "messages_only", Enabled: true},
			{ClientID: "disabled-app", Tenant: "demo", Tier: "default", Enabled: false},
		},
		Providers: []policy.Provider{{Name: "openai", Kind: policy.ProviderOpenAI}, {Name: "anthropic", Kind: policy.ProviderAnthropic}},
		Deployments: []policy.Deployment{
			dep("openai-eu", "openai", "eu", policy.KeySourceFile),
			dep("openai-us", "openai", "us", policy.KeySourceFile),
			dep("anthropic-eu", "anthropic", "eu", policy.KeySourceFile),
			dep("vault-eu", "openai", "eu", policy.KeySourceVault),
		},
		Models: []policy.Model{
			model("gpt-4o-mini", "openai-eu", "gpt-4o-mini-2024-07-18"),
			model("gpt-4o-mini", "openai-us", "gpt-4o-mini-2024-07-18"),
			model("gpt-4o", "openai-eu", "gpt-4o-2024-08-06"),
			model("gpt-4o", "openai-us", "gpt-4o-2024-08-06"),
			model("text-embedding-3-small", "openai-eu", "text-embedding-3-small"),
			model("text-embedding-3-small", "openai-us", "text-embedding-3-small"),
			model("claude-3-5-sonnet", "anthropic-eu", "claude-3-5-sonnet-20241022"),
			model("vaulted-model", "vault-eu", "gpt-4o"),
		},
		ResidencyRules: []policy.ResidencyRule{{Residency: "eu", AllowedRegions: []string{"eu"}, EndpointURL: "https://eu.gateway.example"}},
		RevokedTokens:  []policy.RevokedToken{{JTI: "revoked-jti", ExpiresAt: time.Now().Add(time.Hour), Reason: "test"}},
	}
}

// token mints a valid token for clientID.
func (e *env) token(t testing.TB, clientID string) string {
	t.Helper()
	return e.iss.Token(t, e.iss.Key, e.iss.Claims(clientID))
}

// do sends a request to the data plane. headers may be nil.
func (e *env) do(t *testing.T, method, path, token, body string, headers map[string]string) *http.Response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, e.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// chat sends a non-streaming chat completion for model.
func (e *env) chat(t *testing.T, token, model string) *http.Response {
	t.Helper()
	return e.do(t, http.MethodPost, "/v1/chat/completions", token,
		`{"model":"`+model+`","messages":[{"role":"user","content":"hello"}]}`, nil)
}

// openAIError decodes an OpenAI error body and checks its shape and status.
func openAIError(t *testing.T, resp *http.Response, wantStatus int, wantCode apierr.Code) apierr.OpenAIError {
	t.Helper()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != wantStatus {
		t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, wantStatus, body)
	}
	var b apierr.OpenAIBody
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatalf("error body %s is not OpenAI's schema: %v", body, err)
	}
	if b.Error.Code != wantCode || b.Error.Message == "" || b.Error.Type == "" {
		t.Fatalf("error = %+v, want code %s with a message and a type", b.Error, wantCode)
	}
	if resp.Header.Get("X-Request-Id") == "" {
		t.Fatal("error response has no X-Request-Id")
	}
	return b.Error
}

// spy is an upstream that speaks OpenAI's protocol and records what it was sent.
// A test can take over its answers with handle.
type spy struct {
	region string
	srv    *httptest.Server

	mu       sync.Mutex
	requests []spyRequest
	handler  http.HandlerFunc // optional; answers instead of the default
}

type spyRequest struct {
	At            time.Time // when the spy received it
	Path          string
	Authorization string
	RequestID     string
	Body          map[string]any
}

func newSpy(t testing.TB, region string) *spy {
	s := &spy{region: region}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *spy) handle(h http.HandlerFunc) {
	s.mu.Lock()
	s.handler = h
	s.mu.Unlock()
}

func (s *spy) seen() []spyRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]spyRequest(nil), s.requests...)
}

func (s *spy) serve(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	var body map[string]any
	_ = json.Unmarshal(raw, &body)
	s.mu.Lock()
	s.requests = append(s.requests, spyRequest{At: time.Now(), Path: r.URL.Path, Authorization: r.Header.Get("Authorization"), RequestID: r.Header.Get("X-Request-Id"), Body: body})
	h := s.handler
	s.mu.Unlock()
	if h != nil {
		h(w, r)
		return
	}
	model, _ := body["model"].(string)
	switch r.URL.Path {
	case "/v1/chat/completions":
		if stream, _ := body["stream"].(bool); stream {
			w.Header().Set("Content-Type", "text/event-stream")
			for _, chunk := range []string{"Hello", " from " + s.region} {
				writeEvent(w, chatChunk(model, chunk))
			}
			_, _ = io.WriteString(w, "data: [DONE]\n\n")
			return
		}
		writeJSON(w, map[string]any{
			"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": model,
			"choices": []any{map[string]any{"index": 0, "finish_reason": "stop",
				"message": map[string]any{"role": "assistant", "content": "Hello from " + s.region}}},
			"usage": map[string]any{"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6},
		})
	case "/v1/completions":
		writeJSON(w, map[string]any{
			"id": "cmpl-1", "object": "text_completion", "created": 1700000000, "model": model,
			"choices": []any{map[string]any{"index": 0, "text": "Hello from " + s.region, "finish_reason": "stop"}},
		})
	case "/v1/embeddings":
		writeJSON(w, map[string]any{
			"object": "list", "model": model,
			"data":  []any{map[string]any{"object": "embedding", "index": 0, "embedding": []float64{0.1, 0.2}}},
			"usage": map[string]any{"prompt_tokens": 1, "total_tokens": 1},
		})
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func chatChunk(model, content string) string {
	b, _ := json.Marshal(map[string]any{
		"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": model,
		"choices": []any{map[string]any{"index": 0, "delta": map[string]any{"content": content}}},
	})
	return string(b)
}

func writeEvent(w http.ResponseWriter, data string) {
	_, _ = io.WriteString(w, "data: "+data+"\n\n")
	w.(http.Flusher).Flush()
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
