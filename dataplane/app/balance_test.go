package app_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/shared/policy"
)

// pool is a deployment of the load-balancing tests: an upstream that answers after
// delay, or with 500 while failing, and counts what it saw.
type pool struct {
	hits    atomic.Int32
	delay   atomic.Int64 // nanoseconds
	failing atomic.Bool
}

// balanceEnv serves model "pooled" from eu deployments pool-a and pool-b with the
// given weights, each backed by its own upstream, for the eu worker.
func balanceEnv(t *testing.T, weightA, weightB int) (*env, map[string]*pool) {
	t.Helper()
	e := newEnv(t, envOptions{})
	pools := map[string]*pool{}
	s := e.snapshot()
	for _, d := range []struct {
		name   string
		weight int
	}{{"pool-a", weightA}, {"pool-b", weightB}} {
		p := &pool{}
		pools[d.name] = p
		name := d.name
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p.hits.Add(1)
			time.Sleep(time.Duration(p.delay.Load()))
			if p.failing.Load() {
				http.Error(w, "failing on purpose", http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"from `+name+`"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
		}))
		t.Cleanup(srv.Close)
		s.Deployments = append(s.Deployments, policy.Deployment{Name: d.name, Provider: "openai", Region: "eu",
			Kind: policy.KindCloud, BaseURL: srv.URL, KeySource: policy.KeySourceNone, TLS: policy.TLS{Verify: true},
			TimeoutSeconds: 5, Enabled: true, Retry: policy.Retry{MaxAttempts: 2},
			CircuitBreaker: policy.CircuitBreaker{FailureThreshold: 3, ResetTimeoutSeconds: 60}})
		s.Models = append(s.Models, policy.Model{ID: "pooled@" + d.name, Name: "pooled", Deployment: d.name,
			UpstreamModel: "gpt-4o", Weight: d.weight})
	}
	for i := range s.Tiers {
		s.Tiers[i].AllowedModels = append(s.Tiers[i].AllowedModels, "pooled")
		s.Tiers[i].RequestsPerMinute = 1 << 30
	}
	e.publish(t, s)
	return e, pools
}

// send makes n chat requests for "pooled", each of which must succeed.
func send(t *testing.T, e *env, token string, n int) {
	t.Helper()
	for range n {
		resp := e.chat(t, token, "pooled")
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "from pool-") {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
	}
}

func TestLoadBalancingFollowsWeights(t *testing.T) {
	e, pools := balanceEnv(t, 3, 1)
	for _, p := range pools {
		p.delay.Store(int64(5 * time.Millisecond)) // equal latency, so the weights decide
	}
	const n = 300
	send(t, e, e.token(t, "eu-app"), n)
	a, b := pools["pool-a"].hits.Load(), pools["pool-b"].hits.Load()
	// Expected 225 and 75; the standard deviation of a's count is 7.5.
	if a+b != n || a < 190 || a > 260 {
		t.Fatalf("weights 3:1 split %d requests %d:%d", n, a, b)
	}
}

func TestLoadBalancingPrefersTheFasterDeployment(t *testing.T) {
	e, pools := balanceEnv(t, 1, 1)
	pools["pool-a"].delay.Store(int64(2 * time.Millisecond))
	pools["pool-b"].delay.Store(int64(40 * time.Millisecond))
	token := e.token(t, "eu-app")
	send(t, e, token, 20) // both get measured
	pools["pool-a"].hits.Store(0)
	pools["pool-b"].hits.Store(0)
	const n = 100
	send(t, e, token, n)
	a, b := pools["pool-a"].hits.Load(), pools["pool-b"].hits.Load()
	// Equal weights, b about 10 to 20 times slower: b keeps between the 5 % floor and
	// about a tenth of the traffic. Equal shares would be 50.
	if a+b != n || b > 25 || b == 0 {
		t.Fatalf("a fast and a slow deployment split %d requests %d:%d", n, a, b)
	}
	if m := e.metrics(t); !strings.Contains(m, `portcullis_upstream_latency_seconds{deployment="pool-b"} 0.0`) {
		t.Fatal("the latency average of pool-b is not in /metrics")
	}
}

func TestLoadBalancingRetriesOnTheOtherDeploymentAndAvoidsAnOpenBreaker(t *testing.T) {
	e, pools := balanceEnv(t, 1, 1)
	pools["pool-a"].failing.Store(true)
	const n = 40
	send(t, e, e.token(t, "eu-app"), n) // each request that tries pool-a first is retried on pool-b
	if got := pools["pool-b"].hits.Load(); got != n {
		t.Fatalf("pool-b served %d of %d requests", got, n)
	}
	// pool-a's breaker opened after its third failure; then it got no more calls.
	if got := pools["pool-a"].hits.Load(); got != 3 {
		t.Fatalf("pool-a was called %d times, want exactly the 3 that open its breaker", got)
	}
	if m := e.metrics(t); !strings.Contains(m, `portcullis_upstream_breaker_state{deployment="pool-a"} 2`) {
		t.Fatal("pool-a's breaker is not open in /metrics")
	}
}

func TestStandbyServesOnlyWhenTheWeightedDeploymentIsUnhealthy(t *testing.T) {
	e, pools := balanceEnv(t, 0, 1) // pool-a is the standby
	token := e.token(t, "eu-app")
	send(t, e, token, 20)
	if got := pools["pool-a"].hits.Load(); got != 0 {
		t.Fatalf("the standby served %d requests while the weighted deployment was healthy", got)
	}
	pools["pool-b"].failing.Store(true)
	send(t, e, token, 20) // pool-b fails, the retry (and, once its breaker opens, everything) goes to the standby
	if got := pools["pool-b"].hits.Load(); got != 20+3 {
		t.Fatalf("pool-b was called %d times, want the 20 healthy ones and the 3 that open its breaker", got)
	}
}
