package app_test

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/portcullis-gw/portcullis/dataplane/internal/tracing"
	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

// dashboard is the Grafana dashboard of the data plane's metrics.
var dashboard = filepath.Join("..", "..", "deploy", "grafana", "portcullis-dataplane.json")

// seriesOnlyAfterAnEvent are metrics a worker exports only once what they count
// has happened (a breaker changing state, a key refused): the dashboard test
// finds them in the source instead.
var seriesOnlyAfterAnEvent = []string{
	"portcullis_upstream_breaker_state", "portcullis_upstream_breaker_rejections_total",
	"portcullis_upstream_retry_budget_exhausted_total", "portcullis_upstream_key_retries_total",
	"portcullis_dataplane_policy_snapshots_rejected_total",
}

// TestDashboardNamesRealMetrics: every metric the Grafana dashboard queries is one
// a worker exports, so that the dashboard does not drift from the code.
func TestDashboardNamesRealMetrics(t *testing.T) {
	raw, err := os.ReadFile(dashboard)
	if err != nil {
		t.Fatal(err)
	}
	var queried []string
	for _, name := range regexp.MustCompile(`portcullis_[a-z0-9_]+`).FindAllString(string(raw), -1) {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} { // a histogram's series
			if base, ok := strings.CutSuffix(name, suffix); ok && strings.HasSuffix(base, "_seconds") {
				name = base
			}
		}
		if !slices.Contains(queried, name) {
			queried = append(queried, name)
		}
	}
	if len(queried) < 20 {
		t.Fatalf("the dashboard queries only %d metrics: %v", len(queried), queried)
	}

	// A request that retries and falls back, and a streamed one, make the
	// worker export nearly every series.
	e := newTraceEnv(t, tracing.ProtocolHTTP, nil)
	e.send(t, nil)
	resp := e.do(t, http.MethodPost, "/v1/chat/completions", e.token(t, "premium-app"),
		`{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}`, nil)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the streamed request answered %d", resp.StatusCode)
	}
	// A request's latencies are observed once its handler returns, which may be
	// after the client has read the whole answer.
	var exported string
	waitfor.That(t, "the streamed request's time to first token in the metrics", func() bool {
		exported = e.metrics(t)
		return strings.Contains(exported, "# TYPE portcullis_dataplane_time_to_first_token_seconds ")
	})
	for _, name := range queried {
		if strings.Contains(exported, "# TYPE "+name+" ") {
			continue
		}
		if !slices.Contains(seriesOnlyAfterAnEvent, name) {
			t.Errorf("the dashboard queries %s, which the worker does not export", name)
		} else if !inSource(t, name) {
			t.Errorf("the dashboard queries %s, which no source file names", name)
		}
	}
}

// inSource reports whether a Go file of the data plane declares metric.
func inSource(t *testing.T, metric string) bool {
	t.Helper()
	found := false
	err := filepath.WalkDir(filepath.Join("..", "internal"), func(p string, d os.DirEntry, err error) error {
		if err != nil || found || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return err
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		found = declares(string(src), metric)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// declares reports whether src declares metric: whole, or as a namespace and a name
// (`"portcullis_upstream"` … `Name: "breaker_state"`).
func declares(src, metric string) bool {
	if strings.Contains(src, `"`+metric+`"`) {
		return true
	}
	for i, c := range metric {
		if c == '_' && strings.Contains(src, `"`+metric[:i]+`"`) && strings.Contains(src, `Name: "`+metric[i+1:]+`"`) {
			return true
		}
	}
	return false
}
