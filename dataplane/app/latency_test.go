package app_test

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

// metricValue is the value of series (its name and labels, as /metrics writes
// them) in the metrics text body, and whether it is there.
func metricValue(body, series string) (float64, bool) {
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}

// TestLatencyHistograms: a request that reaches an upstream counts in the gateway
// overhead histogram of its route, which leaves the upstream's time out; a
// streamed answer counts in the time to first token of its deployment; each
// answer in the first-byte histogram of its deployment. A request refused before
// any upstream counts in none of them.
func TestLatencyHistograms(t *testing.T) {
	e := newEnv(t, envOptions{})
	token := e.token(t, "eu-app")
	const slow = 200 * time.Millisecond
	e.spies["eu"].handle(func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(slow) // a slow upstream: its time is not the gateway's
		w.Header().Set("Content-Type", "text/event-stream")
		writeEvent(w, chatChunk("gpt-4o-mini", "hello"))
		writeEvent(w, "[DONE]")
	})
	resp := e.do(t, http.MethodPost, "/v1/chat/completions", token,
		`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}`, nil)
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(raw), "hello") {
		t.Fatalf("streamed chat: %d %s", resp.StatusCode, raw)
	}
	e.spies["eu"].handle(nil) // back to the default answers: plain JSON, at once
	resp = e.chat(t, token, "gpt-4o-mini")
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("chat: %d", resp.StatusCode)
	}
	resp = e.chat(t, "not-a-token", "gpt-4o-mini") // refused at the door
	_, _ = io.Copy(io.Discard, resp.Body)

	const route = `{route="/v1/chat/completions"}`
	var body string
	waitfor.That(t, "the latency histograms of two answered requests", func() bool {
		body = e.metrics(t)
		n, _ := metricValue(body, "portcullis_dataplane_gateway_overhead_seconds_count"+route)
		return n == 2
	})
	for series, want := range map[string]float64{
		`portcullis_dataplane_time_to_first_token_seconds_count{deployment="openai-eu"}`: 1,
		`portcullis_upstream_first_byte_seconds_count{deployment="openai-eu"}`:           2,
	} {
		if got, ok := metricValue(body, series); !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, want)
		}
	}
	ttft, _ := metricValue(body, `portcullis_dataplane_time_to_first_token_seconds_sum{deployment="openai-eu"}`)
	if ttft < slow.Seconds() {
		t.Errorf("time to first token %.3fs, below the upstream's own %s", ttft, slow)
	}
	overhead, _ := metricValue(body, "portcullis_dataplane_gateway_overhead_seconds_sum"+route)
	total, _ := metricValue(body, `portcullis_dataplane_http_request_duration_seconds_sum{method="POST",route="/v1/chat/completions",status="200"}`)
	if total < slow.Seconds() || overhead > total-slow.Seconds()+0.001 {
		t.Errorf("overhead %.4fs of %.4fs in all: the upstream's %s is not left out", overhead, total, slow)
	}
}
