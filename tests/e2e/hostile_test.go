package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"

	dpapp "github.com/portcullis-gw/portcullis/dataplane/app"
	"github.com/portcullis-gw/portcullis/shared/audit"
	"github.com/portcullis-gw/portcullis/shared/testissuer"
	"github.com/portcullis-gw/portcullis/shared/waitfor"
	"github.com/portcullis-gw/portcullis/tests/slowbody"
)

// The hostile-client suite: one named case per protection of the request path
// (request ids, authentication before the body, residency at the door, bounded
// consumption, the JWKS, RFC 8725's extras, the metrics listener, trusted proxies,
// upstream answers), each against a real stack. Every case asserts the refusal,
// that nothing reached an upstream that should not have, and that what the client
// sent (a canary) leaked into no log line and no audit event.

// hostileOrg is an OpenAI-style organization id the hostile upstream leaks.
const hostileOrg = "org-HostileLeak0123456789abcdef"

// hostileUpstream speaks OpenAI's wire protocol badly: for model html-model it
// answers a proxy's HTML page with 200, for leaky-model a 400 naming the provider
// account. It counts what reaches it.
func hostileUpstream(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		var body struct {
			Model string `json:"model"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		switch body.Model {
		case "html-model":
			w.Header().Set("Content-Type", "text/html")
			_, _ = io.WriteString(w, "<html><script>alert('hostile')</script></html>")
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = fmt.Fprintf(w, `{"error":{"message":"Project proj_HostileLeak0123456789ab of %s has no access to this model.","type":"invalid_request_error","code":"model_not_found"}}`, hostileOrg)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &calls
}

// hostileSuite is the stack of the suite with what its cases share.
type hostileSuite struct {
	*stack
	hostileCalls *atomic.Int64
	token        string // hostile-app: residency global, tier hostile (n ≤ 8, max_tokens ≤ 2000)
	euToken      string // eu-app: residency eu
}

// upstreamCalls counts every call any upstream of the stack received.
func (h *hostileSuite) upstreamCalls() int64 {
	return int64(len(h.upstream["eu"].Requests())+len(h.upstream["us"].Requests())) + h.hostileCalls.Load()
}

// noUpstream fails t unless fn makes no upstream call.
func (h *hostileSuite) noUpstream(t *testing.T, fn func()) {
	t.Helper()
	before := h.upstreamCalls()
	fn()
	if n := h.upstreamCalls() - before; n != 0 {
		t.Fatalf("%d upstream calls, want none", n)
	}
}

// noLeak fails t if secret is in any log line or audit event of the stack.
func (h *hostileSuite) noLeak(t *testing.T, what, secret string) {
	t.Helper()
	if strings.Contains(h.logs.String(), secret) {
		t.Fatalf("%s is in the logs", what)
	}
	if strings.Contains(streamContents(t, h.stack), secret) {
		t.Fatalf("%s is in the audit streams", what)
	}
}

// send sends body to worker's path with token and extra headers.
func (h *hostileSuite) send(t *testing.T, worker, path, token, body string, headers map[string]string) gatewayResponse {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+h.dp[worker].Addr()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return gatewayResponse{Status: resp.StatusCode, Header: resp.Header, Body: raw}
}

// refused fails t unless r is status with code (and, when param is set, names it).
func refused(t *testing.T, r gatewayResponse, status int, code, param string) {
	t.Helper()
	if r.Status != status || r.code() != code {
		t.Fatalf("answer %d %s, want %d %s", r.Status, r.Body, status, code)
	}
	if param != "" && !strings.Contains(string(r.Body), `"param":"`+param+`"`) {
		t.Fatalf("answer %s does not name %s", r.Body, param)
	}
}

func startHostileSuite(t *testing.T) *hostileSuite {
	t.Helper()
	s := startStack(t, withLogs(), withWorkers(
		worker{name: "eu", region: "eu"}, worker{name: "us", region: "us"},
		worker{name: "eu-behind-lb", region: "eu", trustedProxies: "127.0.0.1/32"},
	))
	s.seed(t)
	hostile, calls := hostileUpstream(t)
	s.mustAdmin(t, 201, "POST", "/deployments", map[string]any{
		"name": "hostile-eu", "provider": "openai", "region": "eu", "kind": "cloud", "base_url": hostile.URL,
		"key_source": "file", "key_path": s.keyFile, "retry": map[string]any{"max_attempts": 1, "backoff": "constant"},
	})
	for _, m := range []string{"html-model", "leaky-model"} {
		s.mustAdmin(t, 201, "POST", "/models", map[string]any{"name": m, "deployment": "hostile-eu", "upstream_model": m})
	}
	s.mustAdmin(t, 201, "POST", "/tiers", map[string]any{
		"name": "hostile", "requests_per_minute": 100000, "tokens_per_hour": 1 << 40, "max_concurrent_requests": 1000,
		"allowed_models": []string{"gpt-4o-mini", "html-model", "leaky-model"}, "max_choices": 8, "max_output_tokens": 2000,
	})
	s.mustAdmin(t, 201, "POST", "/clients", map[string]any{"client_id": "hostile-app", "tenant": "demo", "tier": "hostile", "residency": "global"})
	s.waitReady(t)
	h := &hostileSuite{stack: s, hostileCalls: calls, token: s.mint(t, "hostile-app"), euToken: s.mint(t, "eu-app")}
	for name := range s.dp {
		waitfor.Within(t, 10*time.Second, name+" knows hostile-app", func() bool {
			return s.call(t, name, h.token, "GET", "/v1/models", nil).Status == http.StatusOK
		})
	}
	return h
}

func TestHostileClients(t *testing.T) {
	t.Parallel()
	h := startHostileSuite(t)
	chat := func(extra string) string {
		return `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]` + extra + `}`
	}

	t.Run("1 request ids: a repeated X-Request-Id hides no request", func(t *testing.T) {
		const n = 20
		ids := map[string]bool{}
		for range n {
			r := h.send(t, "eu", "/v1/chat/completions", h.token, chat(""), map[string]string{"X-Request-Id": "hostile-dup"})
			if r.Status != http.StatusOK || r.Header.Get("X-Client-Request-Id") != "hostile-dup" {
				t.Fatalf("answer %d %s, X-Client-Request-Id %q", r.Status, r.Body, r.Header.Get("X-Client-Request-Id"))
			}
			ids[r.Header.Get("X-Request-Id")] = true
		}
		if len(ids) != n || ids["hostile-dup"] {
			t.Fatalf("%d distinct gateway ids for %d requests (the client's own among them: %v)", len(ids), n, ids["hostile-dup"])
		}
		var byID map[string][]audit.Event
		waitfor.Within(t, 15*time.Second, "every repeated request archived", func() bool {
			_, byID = h.waitAudited(t, "eu", []string{"hostile-dup"}, 10*time.Second)
			return len(byID["hostile-dup"]) >= n
		})
		if len(byID["hostile-dup"]) != n {
			t.Fatalf("%d archived events, want %d", len(byID["hostile-dup"]), n)
		}
	})

	t.Run("2 authenticate first: slow unauthenticated 4 MiB bodies", func(t *testing.T) {
		// Each is answered 401 before its body could arrive (a gateway that read the
		// body first would leave them waiting), while authenticated requests are
		// served. make bench runs 500 of them against a data plane of its own and
		// measures its RSS (docs/benchmarks.md); here, beside the other tests sharing
		// the machine, 100 show the protection.
		const slowClients = 100
		attacker := testissuer.NewKey(t, "attacker-kid")
		forged := (&testissuer.Issuer{}).Token(t, attacker, jwtClaims(t, h.token))
		var statuses sync.Map
		var wg sync.WaitGroup
		upBefore := h.upstreamCalls()
		for i := range slowClients {
			token := forged
			if i%2 == 1 {
				token = "hostile-canary-token-" + strconv.Itoa(i)
			}
			wg.Go(func() { statuses.Store(i, slowbody.Send(h.dp["eu"].Addr(), token)) })
		}
		served := 0
		for range 10 {
			if r := h.send(t, "eu", "/v1/chat/completions", h.token, chat(""), nil); r.Status == http.StatusOK {
				served++
			}
		}
		wg.Wait()
		counts := map[string]int{}
		statuses.Range(func(_, v any) bool { counts[v.(string)]++; return true })
		if counts["401"] != slowClients {
			t.Fatalf("answers to the unauthenticated bodies: %v, want %d × 401 before the body", counts, slowClients)
		}
		if served != 10 {
			t.Fatalf("%d of 10 authenticated requests served meanwhile", served)
		}
		if n := h.upstreamCalls() - upBefore; n != 10 {
			t.Fatalf("%d upstream calls, want the 10 authenticated requests' only", n)
		}
		h.noLeak(t, "a forged token", forged)
		h.noLeak(t, "a garbage token", "hostile-canary-token-1")
	})

	t.Run("3 residency at the door: an eu client through the us worker", func(t *testing.T) {
		canary := fmt.Sprintf("residency-canary-%d", time.Now().UnixNano())
		h.noUpstream(t, func() {
			r := h.send(t, "us", "/v1/chat/completions", h.euToken,
				`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"`+canary+`"}]}`, map[string]string{"X-Request-Id": "door-hostile"})
			refused(t, r, http.StatusMisdirectedRequest, "wrong_region", "")
			if !strings.Contains(string(r.Body), "https://eu.gateway.example") {
				t.Fatalf("421 %s does not name the eu endpoint", r.Body)
			}
		})
		for _, line := range strings.Split(streamContents(t, h.stack), "\n") {
			if strings.Contains(line, `"region":"us"`) && strings.Contains(line, "door-hostile") {
				t.Fatalf("PC_AUDIT_US holds the refused request: %s", line)
			}
		}
		h.noLeak(t, "the refused prompt", canary)
	})

	t.Run("4 bounded consumption: n, max_tokens and model over their bounds", func(t *testing.T) {
		canaryModel := fmt.Sprintf("model-canary-%d", time.Now().UnixNano())
		h.noUpstream(t, func() {
			refused(t, h.send(t, "eu", "/v1/chat/completions", h.token, chat(`,"n":9,"max_tokens":1000`), nil), 400, "invalid_request", "n")
			refused(t, h.send(t, "eu", "/v1/chat/completions", h.token, chat(`,"max_tokens":2001`), nil), 400, "invalid_request", "max_tokens")
			refused(t, h.send(t, "eu", "/v1/chat/completions", h.token,
				`{"model":"`+strings.Repeat("m", 300)+canaryModel+`","messages":[]}`, nil), 400, "invalid_request", "model")
			refused(t, h.send(t, "eu", "/v1/chat/completions", h.token, `{"model":"`+canaryModel+`","messages":[]}`, nil),
				http.StatusForbidden, "model_not_allowed", "")
		})
		// A made-up method is neither a metric label nor log text.
		canaryMethod := "CANARYMETHOD" + strconv.FormatInt(time.Now().UnixNano(), 10)
		req, _ := http.NewRequest(canaryMethod, "http://"+h.dp["eu"].Addr()+"/v1/chat/completions", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("method %s: %d, want 405", canaryMethod, resp.StatusCode)
		}
		if strings.Contains(metrics(t, h.dp["eu"].MetricsAddr()), canaryMethod) {
			t.Fatal("the client's method is a metric label")
		}
		h.noLeak(t, "a client's method", canaryMethod)
		if r := h.send(t, "eu", "/v1/chat/completions", h.token, chat(`,"n":8,"max_tokens":1000`), nil); r.Status != http.StatusOK {
			t.Fatalf("n 8 × 1000 tokens within the tier's caps: %d %s", r.Status, r.Body)
		}
		h.noLeak(t, "a client's model name", canaryModel)
	})

	t.Run("5 jwks: plain http on a non-loopback host is a startup error", func(t *testing.T) {
		_, err := dpapp.LoadConfig(nil, func(k string) string {
			return map[string]string{
				"PORTCULLIS_REGION": "eu", "PORTCULLIS_NATS_URL": "nats://127.0.0.1:4222", "PORTCULLIS_JWT_ISSUER": "https://issuer.example",
				"PORTCULLIS_JWKS_URL": "http://issuer.example/.well-known/jwks.json",
			}[k]
		}, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "PORTCULLIS_JWKS_URL") {
			t.Fatalf("err %v, want a startup error naming PORTCULLIS_JWKS_URL", err)
		}
		// Redirects and oversized answers: dataplane/internal/auth's TestJWKSFetch.
	})

	t.Run("6 jwt: tokens RFC 8725 refuses, signed with the issuer's own key", func(t *testing.T) {
		key := issuerKey(t, h.stack)
		base := jwtClaims(t, h.token)
		with := func(change func(map[string]any)) map[string]any {
			c := map[string]any{}
			for k, v := range base {
				c[k] = v
			}
			change(c)
			return c
		}
		now := time.Now()
		iss := &testissuer.Issuer{}
		for _, tc := range []struct{ name, token string }{
			{"no jti", iss.Token(t, key, with(func(c map[string]any) { delete(c, "jti") }))},
			{"48 h lifetime", iss.Token(t, key, with(func(c map[string]any) { c["iat"], c["exp"] = now.Unix(), now.Add(48*time.Hour).Unix() }))},
			{"crit header", iss.TokenWithHeaders(t, key, map[string]any{"crit": []string{"exp"}}, base)},
			{"alg none", testissuer.Unsigned(t, key.KeyID(), base)},
			{"other key, same kid", iss.Token(t, testissuer.NewKey(t, key.KeyID()), base)},
		} {
			t.Run(tc.name, func(t *testing.T) {
				h.noUpstream(t, func() {
					refused(t, h.send(t, "eu", "/v1/chat/completions", tc.token, chat(""), nil), http.StatusUnauthorized, "invalid_token", "")
				})
				h.noLeak(t, "the token", tc.token)
			})
		}
		// The well-formed token signed the same way is accepted: the refusals are the checks'.
		if r := h.send(t, "eu", "/v1/chat/completions", iss.Token(t, key, with(func(c map[string]any) { c["jti"] = "hostile-ok" })), chat(""), nil); r.Status != http.StatusOK {
			t.Fatalf("a well-formed token signed with the issuer's key: %d %s", r.Status, r.Body)
		}
	})

	t.Run("7 metrics: not on the API port, no client ids", func(t *testing.T) {
		for name, dp := range h.dp {
			resp, err := http.Get("http://" + dp.Addr() + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Fatalf("%s: /metrics on the API port answers %d", name, resp.StatusCode)
			}
			if m := metrics(t, dp.MetricsAddr()); strings.Contains(m, "hostile-app") || strings.Contains(m, "eu-app") {
				t.Fatalf("%s: the metrics name a client", name)
			}
		}
		resp, err := http.Get("http://" + h.dp["eu"].MetricsAddr() + "/debug/pprof/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("/debug/pprof/ answers %d with pprof off", resp.StatusCode)
		}
	})

	t.Run("8 trusted proxies: a forged X-Forwarded-For is ignored", func(t *testing.T) {
		forged := map[string]string{"X-Forwarded-For": "203.0.113.9", "X-Request-Id": "xff-direct"}
		if r := h.send(t, "eu", "/v1/chat/completions", h.token, chat(""), forged); r.Status != http.StatusOK {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		behind := map[string]string{"X-Forwarded-For": "198.51.100.1, 203.0.113.9", "X-Request-Id": "xff-behind-lb"}
		if r := h.send(t, "eu-behind-lb", "/v1/chat/completions", h.token, chat(""), behind); r.Status != http.StatusOK {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		_, byID := h.waitAudited(t, "eu", []string{"xff-direct", "xff-behind-lb"}, 15*time.Second)
		if got := byID["xff-direct"][0].SourceNet; got != "127.0.0.0/24" {
			t.Fatalf("without trusted proxies source_net is %q, want the peer's 127.0.0.0/24", got)
		}
		if got := byID["xff-behind-lb"][0].SourceNet; got != "203.0.113.0/24" {
			t.Fatalf("behind a trusted proxy source_net is %q, want 203.0.113.0/24 (the right-most untrusted hop)", got)
		}
	})

	t.Run("9 upstream answers: no HTML, no provider account ids", func(t *testing.T) {
		r := h.send(t, "eu", "/v1/chat/completions", h.token, `{"model":"html-model","messages":[{"role":"user","content":"hi"}]}`, nil)
		refused(t, r, http.StatusBadGateway, "upstream_error", "")
		if strings.Contains(string(r.Body), "<script>") || r.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("answer %s with X-Content-Type-Options %q", r.Body, r.Header.Get("X-Content-Type-Options"))
		}
		r = h.send(t, "eu", "/v1/chat/completions", h.token, `{"model":"leaky-model","messages":[{"role":"user","content":"hi"}]}`, nil)
		if r.Status != http.StatusBadRequest || strings.Contains(string(r.Body), hostileOrg) || !strings.Contains(string(r.Body), "org-redacted") {
			t.Fatalf("answer %d %s: want the upstream's 400 without its account ids", r.Status, r.Body)
		}
		h.noLeak(t, "the provider's organization id", hostileOrg)
	})
}

// jwtClaims decodes (without verifying) the claims of token.
func jwtClaims(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatal("not a JWT")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

// issuerKey is the control plane's dev issuer's signing key (its data dir's
// jwt-signing-key.pem), with the kid and alg its JWKS publishes.
func issuerKey(t *testing.T, s *stack) jwk.Key {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(s.dataDir, "jwt-signing-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := jwk.ParseKey(pem, jwk.WithPEM(true))
	if err != nil {
		t.Fatal(err)
	}
	set, err := jwk.Fetch(t.Context(), s.adminURL+"/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	pub, ok := set.Key(0)
	if !ok {
		t.Fatal("the dev issuer publishes no key")
	}
	if err := key.Set(jwk.KeyIDKey, pub.KeyID()); err != nil {
		t.Fatal(err)
	}
	if err := key.Set(jwk.AlgorithmKey, jwa.ES256); err != nil {
		t.Fatal(err)
	}
	return key
}
