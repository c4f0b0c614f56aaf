package e2e

import (
	"net/http"
	"strings"
	"testing"
)

// TestMetricsListeners: across the stack, /metrics is served on each plane's
// metrics listener and answers 404 on its API port; after a limited client's
// request, no client id appears in a data plane's metrics (the limiter's series
// are aggregates unless PORTCULLIS_METRICS_CLIENT_LABELS is on).
func TestMetricsListeners(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	s.seed(t)
	s.waitReady(t)
	const client = "eu-app"
	if r := s.call(t, "eu", s.mint(t, client), http.MethodPost, "/v1/chat/completions", chatBody("gpt-4o-mini")); r.Status != http.StatusOK {
		t.Fatalf("chat: %d %s", r.Status, r.Body)
	}

	apis := map[string]string{"control plane": s.adminURL}
	for name, dp := range s.dp {
		apis["data plane "+name] = "http://" + dp.Addr()
	}
	for name, base := range apis {
		resp, err := http.Get(base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %s/metrics answers %d, want 404", name, base, resp.StatusCode)
		}
	}

	if s.cp.MetricsAddr() == "" {
		t.Fatal("the control plane has no metrics listener")
	}
	if m := metrics(t, s.cp.MetricsAddr()); !strings.Contains(m, "portcullis_controlplane_policy_version ") {
		t.Errorf("the control plane's metrics lack its policy version")
	}
	m := metrics(t, s.dp["eu"].MetricsAddr())
	if !strings.Contains(m, "\nportcullis_limits_admitted_total 1\n") {
		t.Errorf("eu's metrics lack the aggregate admission count")
	}
	if strings.Contains(m, client) {
		t.Errorf("eu's metrics name the client %s", client)
	}
}
