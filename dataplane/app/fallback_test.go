package app_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/dataplane/app"
	"github.com/portcullis-gw/portcullis/shared/policy"
	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

// fallbackEnv adds self-hosted llama3-8b deployments in eu and us, each answering
// with its name, and maps openai's gpt-4o-mini to llama3-8b. The openai deployments
// take one attempt per request and open their breaker after threshold failures.
func fallbackEnv(t *testing.T, threshold int, window time.Duration) (*env, map[string]*atomic.Int32) {
	t.Helper()
	return fallbackEnvAttempts(t, 1, threshold, window, 0)
}

// fallbackEnvAttempts is fallbackEnv with attempts attempts per request at openai,
// falling back above errorRate (0: the default).
func fallbackEnvAttempts(t *testing.T, attempts, threshold int, window time.Duration, errorRate float64) (*env, map[string]*atomic.Int32) {
	t.Helper()
	e, hits, _ := fallbackEnvSnapshot(t, attempts, threshold, window, errorRate)
	return e, hits
}

// fallbackEnvSnapshot is fallbackEnvAttempts, and the snapshot it published, to
// publish again changed.
func fallbackEnvSnapshot(t *testing.T, attempts, threshold int, window time.Duration, errorRate float64) (*env, map[string]*atomic.Int32, *policy.Snapshot) {
	t.Helper()
	e := newEnv(t, envOptions{configure: func(c *app.Config) { c.FallbackWindow, c.FallbackErrorRate = window, errorRate }})
	hits := map[string]*atomic.Int32{}
	s := e.snapshot()
	s.Providers = append(s.Providers, policy.Provider{Name: "ollama", Kind: policy.ProviderOllama})
	for _, region := range []string{"eu", "us"} {
		name := "ollama-" + region
		n := &atomic.Int32{}
		hits[name] = n
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"from `+name+`"},"finish_reason":"stop"}]}`)
		}))
		t.Cleanup(srv.Close)
		s.Deployments = append(s.Deployments, policy.Deployment{Name: name, Provider: "ollama", Region: region,
			Kind: policy.KindSelfHosted, BaseURL: srv.URL, KeySource: policy.KeySourceNone, TLS: policy.TLS{Verify: true},
			TimeoutSeconds: 5, Enabled: true, Retry: policy.Retry{MaxAttempts: 1}})
		s.Models = append(s.Models, policy.Model{ID: "llama3-8b@" + name, Name: "llama3-8b", Deployment: name, UpstreamModel: "llama3:8b"})
	}
	s.FallbackMaps = []policy.FallbackMap{{ID: "f1", Provider: "openai", FromModel: "gpt-4o-mini", ToModel: "llama3-8b"}}
	for i := range s.Tiers {
		s.Tiers[i].RequestsPerMinute = 1 << 30
	}
	for i := range s.Deployments {
		if s.Deployments[i].Provider == "openai" {
			s.Deployments[i].Retry = policy.Retry{MaxAttempts: attempts, Backoff: "constant"}
			s.Deployments[i].CircuitBreaker = policy.CircuitBreaker{FailureThreshold: threshold, ResetTimeoutSeconds: 60}
		}
	}
	e.publish(t, s)
	return e, hits, s
}

// TestFallbackWithinTheRequestStaysInTheResidency: with openai-eu failing, every
// request of an eu client is served by the eu fallback, the first ones included:
// before the breaker opens each falls back after its failed attempt, afterwards
// without calling openai-eu at all.
func TestFallbackWithinTheRequestStaysInTheResidency(t *testing.T) {
	e, hits := fallbackEnv(t, 3, 30*time.Second)
	token := e.token(t, "eu-app") // residency eu: openai-eu, and only ollama-eu as fallback
	failFirst(e, 1<<30, http.StatusInternalServerError, "")
	for i := range 8 {
		id := "fb-" + strconv.Itoa(i)
		resp := e.do(t, http.MethodPost, "/v1/chat/completions", token,
			`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}`, map[string]string{"X-Request-Id": id})
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Portcullis-Fallback") != "llama3-8b" || !strings.Contains(string(raw), "from ollama-eu") {
			t.Fatalf("request %d: status %d fallback %q: %s", i, resp.StatusCode, resp.Header.Get("X-Portcullis-Fallback"), raw)
		}
		wantReason := "circuit_open" // the breaker opened after 3 failures
		if i < 3 {
			wantReason = "upstream_error" // openai-eu's 500, in this very request
		}
		if line := accessLine(t, e.logs, id); line["fallback"] != "llama3-8b" || line["fallback_reason"] != wantReason {
			t.Fatalf("request %d: access log fallback %v reason %v, want llama3-8b %s", i, line["fallback"], line["fallback_reason"], wantReason)
		}
	}
	if n := len(e.spies["eu"].seen()); n != 3 {
		t.Fatalf("openai-eu saw %d attempts, want 3 (until its breaker opened)", n)
	}
	if n := hits["ollama-eu"].Load(); n != 8 {
		t.Fatalf("ollama-eu served %d requests, want 8", n)
	}
	if hits["ollama-us"].Load() != 0 {
		t.Fatalf("an eu client fell back to the us deployment %d times", hits["ollama-us"].Load())
	}
	if n := len(e.spies["us"].seen()); n != 0 {
		t.Fatalf("the us upstream saw %d requests of an eu client", n)
	}
}

// TestFallbackAfterTheRetries: the fallback comes after every attempt the
// deployment allows, and for a 429 whose Retry-After is too long to wait; a client
// error of the upstream is the answer, not a reason to fall back.
func TestFallbackAfterTheRetries(t *testing.T) {
	tests := []struct {
		name         string
		status       int
		retryAfter   string
		wantAttempts int // at openai-eu
		wantStatus   int
		wantFallback string
		wantReason   string
	}{
		{name: "5xx after 3 attempts", status: http.StatusBadGateway, wantAttempts: 3, wantStatus: 200,
			wantFallback: "llama3-8b", wantReason: "upstream_error"},
		{name: "429 with a long Retry-After", status: http.StatusTooManyRequests, retryAfter: "120", wantAttempts: 1, wantStatus: 200,
			wantFallback: "llama3-8b", wantReason: "rate_limit_exceeded"},
		{name: "a client error is the answer", status: http.StatusBadRequest, wantAttempts: 1, wantStatus: 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, hits := fallbackEnvAttempts(t, 3, 100, 30*time.Second, 0)
			failFirst(e, 1<<30, tc.status, tc.retryAfter)
			resp := e.do(t, http.MethodPost, "/v1/chat/completions", e.token(t, "eu-app"),
				`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}`, map[string]string{"X-Request-Id": "r1"})
			_, _ = io.Copy(io.Discard, resp.Body)
			if resp.StatusCode != tc.wantStatus || resp.Header.Get("X-Portcullis-Fallback") != tc.wantFallback {
				t.Fatalf("status %d fallback %q, want %d %q", resp.StatusCode, resp.Header.Get("X-Portcullis-Fallback"), tc.wantStatus, tc.wantFallback)
			}
			if tc.wantFallback != "" && resp.Header.Get("Retry-After") != "" {
				t.Fatalf("a served fallback answer carries the primary's Retry-After %q", resp.Header.Get("Retry-After"))
			}
			if n := len(e.spies["eu"].seen()); n != tc.wantAttempts {
				t.Fatalf("openai-eu saw %d attempts, want %d", n, tc.wantAttempts)
			}
			wantHits := int32(0)
			if tc.wantFallback != "" {
				wantHits = 1
			}
			if n := hits["ollama-eu"].Load(); n != wantHits {
				t.Fatalf("ollama-eu saw %d requests, want %d", n, wantHits)
			}
			if line := accessLine(t, e.logs, "r1"); tc.wantReason != "" && line["fallback_reason"] != tc.wantReason {
				t.Fatalf("access log fallback_reason %v, want %s", line["fallback_reason"], tc.wantReason)
			}
		})
	}
}

// TestFallbackIsPaidFromTheRetryBudget: a fallback call after a failed attempt is
// a retry; once the failing deployment's budget is spent, its failure is the
// answer, so an outage cannot double the calls made.
func TestFallbackIsPaidFromTheRetryBudget(t *testing.T) {
	// Neither the breaker nor the error rate switches to the fallback before a request.
	e, hits := fallbackEnvAttempts(t, 1, 1000, 30*time.Second, 1)
	failFirst(e, 1<<30, http.StatusInternalServerError, "")
	token := e.token(t, "eu-app")
	const n = 40
	served, failed := 0, 0
	for range n {
		resp := e.chat(t, token, "gpt-4o-mini")
		_, _ = io.Copy(io.Discard, resp.Body)
		switch {
		case resp.StatusCode == http.StatusOK && resp.Header.Get("X-Portcullis-Fallback") == "llama3-8b":
			served++
		case resp.StatusCode == http.StatusBadGateway:
			failed++
		default:
			t.Fatalf("status %d fallback %q", resp.StatusCode, resp.Header.Get("X-Portcullis-Fallback"))
		}
	}
	// The budget starts at 10 retries and earns 0.2 per request: at most 10 + 0.2 × 40.
	if served > 18 || failed == 0 {
		t.Fatalf("%d requests fell back and %d failed: the retry budget does not bound the fallback calls", served, failed)
	}
	if served < 10 {
		t.Fatalf("only %d requests fell back; the budget allows at least 10", served)
	}
	if got := hits["ollama-eu"].Load(); int(got) != served {
		t.Fatalf("ollama-eu saw %d calls, %d requests were served by it", got, served)
	}
}

func TestFallbackOnErrorRateAndBack(t *testing.T) {
	e, hits := fallbackEnv(t, 1000, 2*time.Second) // the breaker never opens
	token := e.token(t, "eu-app")
	var calls atomic.Int32
	var failing atomic.Bool
	failing.Store(true)
	e.spies["eu"].handle(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() && calls.Add(1)%4 == 0 { // 25 % errors
			http.Error(w, "flaky", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"ok","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"from openai-eu"},"finish_reason":"stop"}]}`)
	})
	waitfor.That(t, "the error rate to switch to the fallback", func() bool {
		resp := e.chat(t, token, "gpt-4o-mini")
		resp.Body.Close()
		return resp.Header.Get("X-Portcullis-Fallback") == "llama3-8b"
	})
	if hits["ollama-eu"].Load() == 0 {
		t.Fatal("the fallback deployment was not called")
	}
	if !strings.Contains(e.metrics(t), `portcullis_upstream_error_rate{deployment="openai-eu"} 0.`) {
		t.Fatal("the error rate is not in /metrics")
	}
	failing.Store(false)
	// The failures age out of the 2 s window; the primary serves again.
	waitfor.That(t, "the primary to serve again", func() bool {
		resp := e.chat(t, token, "gpt-4o-mini")
		raw, _ := io.ReadAll(resp.Body)
		return resp.Header.Get("X-Portcullis-Fallback") == "" && strings.Contains(string(raw), "from openai-eu")
	})
}

// TestFallbackTriggerFromThePolicy: the policy's fallback trigger for openai (a
// self-hosted fallback's enabled_when) decides: at 25 % errors, a trigger above 0.5
// keeps serving from openai-eu, failures and all, where the data plane's own 0.1
// would fall back; a new policy with 0.2 falls back, without a restart; a trigger
// with the breaker only does not fall back on the error rate.
func TestFallbackTriggerFromThePolicy(t *testing.T) {
	e, hits, s := fallbackEnvSnapshot(t, 1, 1000, 2*time.Second, 0) // the breaker never opens
	half := 0.5
	s.Settings = &policy.GatewaySettings{Name: policy.SettingsName,
		Fallbacks: []policy.FallbackTrigger{{Provider: "openai", CircuitOpen: true, ErrorRateAbove: &half}}}
	e.publish(t, s)
	token := e.token(t, "eu-app")
	calls := failEvery(e, 4) // 25 % errors
	// Every request tries openai-eu first (a failed one then falls back after its
	// attempt, whatever the trigger): none skips it for the error rate.
	for range 40 {
		resp := e.chat(t, token, "gpt-4o-mini")
		resp.Body.Close()
	}
	if n := calls.Load(); n != 40 {
		t.Fatalf("openai-eu saw %d of 40 requests under a 0.5 trigger at 25 %% errors", n)
	}
	fifth := 0.2
	s.Settings.Fallbacks[0].ErrorRateAbove = &fifth
	e.publish(t, s)
	waitfor.That(t, "the error rate above 0.2 to switch to the fallback", func() bool {
		resp := e.chat(t, token, "gpt-4o-mini")
		resp.Body.Close()
		return resp.Header.Get("X-Portcullis-Fallback") == "llama3-8b"
	})
	if hits["ollama-eu"].Load() == 0 {
		t.Fatal("the fallback deployment was not called")
	}
}

// TestFallbackTriggerWithoutTheErrorRate: a trigger of the breaker alone keeps
// requests on openai-eu above the data plane's own error rate.
func TestFallbackTriggerWithoutTheErrorRate(t *testing.T) {
	e, _, s := fallbackEnvSnapshot(t, 1, 1000, 2*time.Second, 0)
	s.Settings = &policy.GatewaySettings{Name: policy.SettingsName,
		Fallbacks: []policy.FallbackTrigger{{Provider: "openai", CircuitOpen: true}}}
	e.publish(t, s)
	token := e.token(t, "eu-app")
	calls := failEvery(e, 2) // 50 %: far above the data plane's 0.1
	for range 30 {
		resp := e.chat(t, token, "gpt-4o-mini")
		resp.Body.Close()
	}
	if n := calls.Load(); n != 30 {
		t.Fatalf("openai-eu saw %d of 30 requests: the error rate made requests skip it", n)
	}
}

// TestRegionProxyFromThePolicy: the policy's proxies for the worker's region carry
// its upstream calls, without a restart; a proxy the worker's egress allowlist does
// not let through is refused, and calls go as the worker is configured.
func TestRegionProxyFromThePolicy(t *testing.T) {
	e := newEnv(t, envOptions{})
	var proxied atomic.Int32
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !r.URL.IsAbs() { // a forward proxy gets the absolute URL
			http.Error(w, "not a proxy request", http.StatusBadRequest)
			return
		}
		proxied.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"p","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"through the proxy"},"finish_reason":"stop"}]}`)
	}))
	t.Cleanup(proxy.Close)
	token := e.token(t, "eu-app")
	s := e.snapshot()
	s.Settings = &policy.GatewaySettings{Name: policy.SettingsName, Proxies: []policy.RegionProxy{{Region: "eu", HTTPProxy: proxy.URL}}}
	e.publish(t, s)
	resp := e.chat(t, token, "gpt-4o-mini")
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(raw), "through the proxy") || proxied.Load() != 1 {
		t.Fatalf("with the policy's proxy: %d %s (%d proxied)", resp.StatusCode, raw, proxied.Load())
	}

	// localhost is not in the allowlist (127.0.0.1 is): the proxy is refused.
	s.Settings.Proxies[0].HTTPProxy = strings.Replace(proxy.URL, "127.0.0.1", "localhost", 1)
	e.publish(t, s)
	resp = e.chat(t, token, "gpt-4o-mini")
	raw, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.Contains(string(raw), "through the proxy") || proxied.Load() != 1 {
		t.Fatalf("with a proxy outside the allowlist: %d %s (%d proxied)", resp.StatusCode, raw, proxied.Load())
	}
}

// failEvery makes openai-eu's spy fail every nth call with a 500 and answer the
// others; it returns the count of calls.
func failEvery(e *env, n int32) *atomic.Int32 {
	var calls atomic.Int32
	e.spies["eu"].handle(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1)%n == 0 {
			http.Error(w, "flaky", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"ok","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"from openai-eu"},"finish_reason":"stop"}]}`)
	})
	return &calls
}
