package app_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/dataplane/app"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// fallbackEnv adds self-hosted llama3-8b deployments in eu and us, each answering
// with its name, and maps openai's gpt-4o-mini to llama3-8b. The openai deployments
// take one attempt per request and open their breaker after threshold failures.
func fallbackEnv(t *testing.T, threshold int, window time.Duration) (*env, map[string]*atomic.Int32) {
	t.Helper()
	e := newEnv(t, envOptions{configure: func(c *app.Config) { c.FallbackWindow = window }})
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
			s.Deployments[i].Retry = policy.Retry{MaxAttempts: 1}
			s.Deployments[i].CircuitBreaker = policy.CircuitBreaker{FailureThreshold: threshold, ResetTimeoutSeconds: 60}
		}
	}
	e.publish(t, s)
	return e, hits
}

func TestFallbackWhenTheBreakerOpensStaysInTheResidency(t *testing.T) {
	e, hits := fallbackEnv(t, 3, 30*time.Second)
	token := e.token(t, "eu-app") // residency eu: openai-eu, and only ollama-eu as fallback
	failFirst(e, 1<<30, http.StatusInternalServerError, "")
	for range 3 {
		resp := e.chat(t, token, "gpt-4o-mini")
		resp.Body.Close()
		if resp.Header.Get("X-Portcullis-Fallback") != "" {
			t.Fatal("fell back before the breaker opened")
		}
	}
	for range 5 {
		resp := e.chat(t, token, "gpt-4o-mini")
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Portcullis-Fallback") != "llama3-8b" || !strings.Contains(string(raw), "from ollama-eu") {
			t.Fatalf("status %d fallback %q: %s", resp.StatusCode, resp.Header.Get("X-Portcullis-Fallback"), raw)
		}
	}
	if hits["ollama-us"].Load() != 0 {
		t.Fatalf("an eu client fell back to the us deployment %d times", hits["ollama-us"].Load())
	}
	if n := len(e.spies["us"].seen()); n != 0 {
		t.Fatalf("the us upstream saw %d requests of an eu client", n)
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
	waitFor(t, "the error rate to switch to the fallback", func() bool {
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
	waitFor(t, "the primary to serve again", func() bool {
		resp := e.chat(t, token, "gpt-4o-mini")
		raw, _ := io.ReadAll(resp.Body)
		return resp.Header.Get("X-Portcullis-Fallback") == "" && strings.Contains(string(raw), "from openai-eu")
	})
}
