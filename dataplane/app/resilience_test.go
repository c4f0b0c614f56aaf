package app_test

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/health"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/policy"
	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

// resilienceEnv is an env whose deployments use the given retry and breaker
// settings. Clients of eu-app (residency eu) only ever reach the eu spy.
func resilienceEnv(t *testing.T, maxAttempts, threshold, resetSeconds int) *env {
	t.Helper()
	e := newEnv(t, envOptions{})
	s := e.snapshot()
	for i := range s.Tiers { // polling must not run into the client's own limits
		s.Tiers[i].RequestsPerMinute = 1 << 30
	}
	for i := range s.Deployments {
		s.Deployments[i].Retry = policy.Retry{MaxAttempts: maxAttempts, Backoff: "exponential"}
		s.Deployments[i].CircuitBreaker = policy.CircuitBreaker{FailureThreshold: threshold, ResetTimeoutSeconds: resetSeconds}
	}
	e.publish(t, s)
	return e
}

// failFirst answers the first n requests with status (and Retry-After if given),
// then succeeds like the default spy.
func failFirst(e *env, n int32, status int, retryAfter string) {
	var calls atomic.Int32
	e.spies["eu"].handle(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= n {
			if retryAfter != "" {
				w.Header().Set("Retry-After", retryAfter)
			}
			http.Error(w, "failing on purpose", status)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"chatcmpl-ok","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
	})
}

func TestRetriesUntilSuccess(t *testing.T) {
	e := resilienceEnv(t, 3, 100, 60)
	failFirst(e, 2, http.StatusInternalServerError, "")
	resp := e.chat(t, e.token(t, "eu-app"), "gpt-4o-mini")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "chatcmpl-ok") {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if n := len(e.spies["eu"].seen()); n != 3 {
		t.Fatalf("the upstream saw %d attempts, want 3", n)
	}

	// max_attempts bounds the attempts.
	failFirst(e, 10, http.StatusBadGateway, "")
	before := len(e.spies["eu"].seen())
	openAIError(t, e.chat(t, e.token(t, "eu-app"), "gpt-4o-mini"), http.StatusBadGateway, apierr.UpstreamError)
	if n := len(e.spies["eu"].seen()) - before; n != 3 {
		t.Fatalf("the upstream saw %d attempts, want max_attempts = 3", n)
	}
}

func TestRetryHonoursRetryAfter(t *testing.T) {
	e := resilienceEnv(t, 2, 100, 60)
	failFirst(e, 1, http.StatusTooManyRequests, "1")
	resp := e.chat(t, e.token(t, "eu-app"), "gpt-4o-mini")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	seen := e.spies["eu"].seen()
	if len(seen) != 2 {
		t.Fatalf("the upstream saw %d attempts, want 2", len(seen))
	}
	if gap := seen[1].At.Sub(seen[0].At); gap < 900*time.Millisecond {
		t.Fatalf("retried %s after a 429 with Retry-After: 1", gap)
	}

	// A Retry-After beyond the cap is not waited out: the 429 reaches the client.
	failFirst(e, 1, http.StatusTooManyRequests, "60")
	before := len(e.spies["eu"].seen())
	openAIError(t, e.chat(t, e.token(t, "eu-app"), "gpt-4o-mini"), http.StatusTooManyRequests, apierr.RateLimited)
	if n := len(e.spies["eu"].seen()) - before; n != 1 {
		t.Fatalf("the upstream saw %d attempts, want 1", n)
	}
}

func TestBreakerOpensFailsFastAndCloses(t *testing.T) {
	e := resilienceEnv(t, 1, 5, 1)
	token := e.token(t, "eu-app")
	failFirst(e, 5, http.StatusInternalServerError, "")
	for range 5 {
		openAIError(t, e.chat(t, token, "gpt-4o-mini"), http.StatusBadGateway, apierr.UpstreamError)
	}
	if !strings.Contains(e.metrics(t), `portcullis_upstream_breaker_state{deployment="openai-eu"} 2`) {
		t.Fatal("the breaker is not open after 5 failures")
	}
	// Open: refused at once, without calling the upstream.
	before := len(e.spies["eu"].seen())
	start := time.Now()
	openAIError(t, e.chat(t, token, "gpt-4o-mini"), http.StatusServiceUnavailable, apierr.UpstreamUnavailable)
	t.Logf("refused in %s with the breaker open", time.Since(start))
	if n := len(e.spies["eu"].seen()); n != before {
		t.Fatalf("the upstream was called %d times with the breaker open", n-before)
	}
	// After the reset timeout one probe goes through; its success closes the breaker.
	waitfor.That(t, "a probe after the reset timeout", func() bool {
		resp := e.chat(t, token, "gpt-4o-mini")
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if n := len(e.spies["eu"].seen()) - before; n != 1 {
		t.Fatalf("the upstream saw %d calls while half-open, want the one probe", n)
	}
	// The probe's answer is flushed before its outcome reaches the breaker.
	waitfor.That(t, "the breaker to close after a successful probe", func() bool {
		return strings.Contains(e.metrics(t), `portcullis_upstream_breaker_state{deployment="openai-eu"} 0`)
	})
}

func TestClientErrorsDoNotOpenTheBreaker(t *testing.T) {
	e := resilienceEnv(t, 1, 2, 60)
	failFirst(e, 100, http.StatusBadRequest, "")
	for range 5 {
		if resp := e.chat(t, e.token(t, "eu-app"), "gpt-4o-mini"); resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d, want the upstream's 400", resp.StatusCode)
		}
	}
	if !strings.Contains(e.metrics(t), `portcullis_upstream_breaker_state{deployment="openai-eu"} 0`) {
		t.Fatal("client errors opened the breaker")
	}
}

func TestRetryBudgetBoundsRetries(t *testing.T) {
	e := resilienceEnv(t, 3, 100000, 60)
	failFirst(e, 1<<30, http.StatusInternalServerError, "")
	const requests = 60
	for range requests {
		resp := e.chat(t, e.token(t, "eu-app"), "gpt-4o-mini")
		resp.Body.Close()
	}
	// Without a budget: 3 attempts each. With it: 20 % extra plus a burst of 10.
	if n := len(e.spies["eu"].seen()); n > requests+requests/5+10 {
		t.Fatalf("%d upstream calls for %d requests: retries amplified the outage", n, requests)
	}
	if !strings.Contains(e.metrics(t), `portcullis_upstream_retry_budget_exhausted_total{deployment="openai-eu"}`) {
		t.Fatal("budget exhaustion is not counted")
	}
}

// TestHungUpstreamDoesNotPileUp: 100 concurrent requests against an upstream that
// never answers all end at the deployment's deadline, and once the breaker has
// opened, the next request is refused at once without reaching the upstream.
func TestHungUpstreamDoesNotPileUp(t *testing.T) {
	e := newEnv(t, envOptions{})
	s := e.snapshot()
	for i := range s.Tiers {
		s.Tiers[i].RequestsPerMinute, s.Tiers[i].MaxConcurrentRequests = 1<<30, 1000
	}
	for i := range s.Deployments {
		s.Deployments[i].TimeoutSeconds = 1
		s.Deployments[i].Retry = policy.Retry{MaxAttempts: 1}
		s.Deployments[i].CircuitBreaker = policy.CircuitBreaker{FailureThreshold: 5, ResetTimeoutSeconds: 60}
	}
	e.publish(t, s)
	release := make(chan struct{})
	defer close(release)
	e.spies["eu"].handle(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	token := e.token(t, "eu-app")
	var wg sync.WaitGroup
	var timedOut atomic.Int32
	var slowest atomic.Int64
	for range 100 {
		wg.Go(func() {
			start := time.Now()
			resp := e.chat(t, token, "gpt-4o-mini")
			resp.Body.Close()
			if resp.StatusCode == http.StatusGatewayTimeout {
				timedOut.Add(1)
			}
			for d := int64(time.Since(start)); d > slowest.Load() && !slowest.CompareAndSwap(slowest.Load(), d); {
			}
		})
	}
	wg.Wait()
	t.Logf("%d of 100 timed out; the slowest answer took %s (deadline 1s)", timedOut.Load(), time.Duration(slowest.Load()))
	if timedOut.Load() != 100 {
		t.Fatalf("%d of 100 hung requests got 504", timedOut.Load())
	}
	if time.Duration(slowest.Load()) > 10*time.Second {
		t.Fatalf("a hung request took %s with a 1s deadline: requests piled up", time.Duration(slowest.Load()))
	}
	before := len(e.spies["eu"].seen())
	openAIError(t, e.chat(t, token, "gpt-4o-mini"), http.StatusServiceUnavailable, apierr.UpstreamUnavailable)
	if n := len(e.spies["eu"].seen()); n != before {
		t.Fatal("the open breaker let a request through to the hung upstream")
	}
}

// TestStreamBrokenBeforeItsFirstEventIsRetried: an upstream that accepts a stream
// and breaks before sending anything has sent the client nothing, so the attempt
// is retried.
func TestStreamBrokenBeforeItsFirstEventIsRetried(t *testing.T) {
	e := resilienceEnv(t, 3, 100, 60)
	var calls atomic.Int32
	e.spies["eu"].handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		if calls.Add(1) == 1 {
			w.(http.Flusher).Flush()
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				conn.Close() // headers out, then nothing
			}
			return
		}
		writeEvent(w, chatChunk("gpt-4o-mini", "second try"))
		writeEvent(w, "[DONE]")
	})
	resp := e.do(t, http.MethodPost, "/v1/chat/completions", e.token(t, "eu-app"),
		`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}`, nil)
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(raw), "second try") || !strings.HasSuffix(string(raw), "data: [DONE]\n\n") {
		t.Fatalf("status %d: %s", resp.StatusCode, raw)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("the upstream saw %d attempts, want 2", n)
	}
}

// TestHealthReportsShowTheBreaker: the worker publishes its view of every
// deployment on NATS, and an open breaker shows in it.
func TestHealthReportsShowTheBreaker(t *testing.T) {
	e := resilienceEnv(t, 1, 2, 60)
	reports := make(chan health.Report, 16)
	sub, err := e.js.Conn().Subscribe(natsnames.HealthSubjects, func(m *nats.Msg) {
		if r, err := health.Decode(m.Data); err == nil {
			select {
			case reports <- r:
			default:
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	failFirst(e, 100, http.StatusInternalServerError, "")
	for range 2 {
		resp := e.chat(t, e.token(t, "eu-app"), "gpt-4o-mini")
		resp.Body.Close()
	}
	deadline := time.After(3 * health.Interval)
	for {
		select {
		case r := <-reports:
			if r.Worker != "test-eu" || r.Region != "eu" {
				t.Fatalf("report from %q in %q", r.Worker, r.Region)
			}
			for _, d := range r.Deployments {
				if d.Name == "openai-eu" && d.Breaker == "open" && d.ErrorRate == 1 && d.Samples == 2 {
					return
				}
			}
		case <-deadline:
			t.Fatal("no health report showed openai-eu's breaker open")
		}
	}
}

// TestTotalTimeoutCutsALongStream: total_timeout_seconds bounds a whole attempt, a
// streamed answer included; the stream ends with an error event, not [DONE].
func TestTotalTimeoutCutsALongStream(t *testing.T) {
	e := newEnv(t, envOptions{})
	s := e.snapshot()
	for i := range s.Deployments {
		s.Deployments[i].TotalTimeoutSeconds = 1
		s.Deployments[i].Retry = policy.Retry{MaxAttempts: 1}
	}
	e.publish(t, s)
	e.spies["eu"].handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for range 20 { // 4 s of events, one every 200 ms
			writeEvent(w, chatChunk("gpt-4o", "part"))
			select {
			case <-r.Context().Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
		writeEvent(w, "[DONE]")
	})
	start := time.Now()
	resp := e.do(t, http.MethodPost, "/v1/chat/completions", e.token(t, "premium-app"),
		`{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}`, nil)
	raw, _ := io.ReadAll(resp.Body)
	took := time.Since(start)
	if !strings.Contains(string(raw), `"part"`) || strings.Contains(string(raw), "[DONE]") || !strings.Contains(string(raw), `"upstream_error"`) {
		t.Fatalf("stream after %s: %s", took, raw)
	}
	if took > 3*time.Second {
		t.Fatalf("a 4 s stream under a 1 s total timeout took %s", took)
	}
}
