package app_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/dataplane/app"
	"github.com/portcullis-gw/portcullis/shared/logging"
	"github.com/portcullis-gw/portcullis/shared/natstest"
)

// getMetricsListener GETs path on the data plane's metrics listener and returns the
// status and body.
func (e *env) getMetricsListener(t testing.TB, path string) (int, string) {
	t.Helper()
	addr := e.app.MetricsAddr()
	if addr == "" {
		t.Fatal("the data plane has no metrics listener")
	}
	return get(t, e.client, "http://"+addr+path)
}

func get(t testing.TB, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// TestMetricsOnTheirOwnListener: /metrics is served on the metrics listener, not on
// the API's port, which answers it 404 like any unknown path; /healthz and /readyz
// stay on the API; /debug/pprof/ is served nowhere unless asked for.
func TestMetricsOnTheirOwnListener(t *testing.T) {
	e := newEnv(t, envOptions{})
	if e.app.MetricsAddr() == "" || e.app.MetricsAddr() == e.app.Addr() {
		t.Fatalf("metrics address %q, API address %q: want a listener of its own", e.app.MetricsAddr(), e.app.Addr())
	}
	if resp := e.do(t, http.MethodGet, "/metrics", "", "", nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("the API port answers /metrics with %d, want 404", resp.StatusCode)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if resp := e.do(t, http.MethodGet, path, "", "", nil); resp.StatusCode != http.StatusOK {
			t.Errorf("the API port answers %s with %d, want 200", path, resp.StatusCode)
		}
	}
	status, body := e.getMetricsListener(t, "/metrics")
	if status != http.StatusOK || !strings.Contains(body, "portcullis_dataplane_policy_version 1") ||
		!strings.Contains(body, `route="unmatched",status="404"`) {
		t.Fatalf("the metrics listener's /metrics: %d, without the policy version or the API's 404:\n%s", status, body)
	}
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/cmdline"} {
		if status, _ := e.getMetricsListener(t, path); status != http.StatusNotFound {
			t.Errorf("pprof is off by default, but the metrics listener answers %s with %d", path, status)
		}
		if resp := e.do(t, http.MethodGet, path, "", "", nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("the API port answers %s with %d, want 404", path, resp.StatusCode)
		}
	}

	// Stop closes the metrics listener too.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.app.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if c, err := net.DialTimeout("tcp", e.app.MetricsAddr(), time.Second); err == nil {
		c.Close()
		t.Fatal("the metrics listener still accepts connections after Stop")
	}
}

// TestPprofOnTheMetricsListener: PORTCULLIS_PPROF serves /debug/pprof/ on the
// metrics listener, and still never on the API's port.
func TestPprofOnTheMetricsListener(t *testing.T) {
	e := newEnv(t, envOptions{configure: func(c *app.Config) { c.Pprof = true }})
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline", "/debug/pprof/symbol"} {
		if status, _ := e.getMetricsListener(t, path); status != http.StatusOK {
			t.Errorf("with pprof on, the metrics listener answers %s with %d, want 200", path, status)
		}
		if resp := e.do(t, http.MethodGet, path, "", "", nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("with pprof on, the API port answers %s with %d, want 404", path, resp.StatusCode)
		}
	}
	if status, _ := e.getMetricsListener(t, "/metrics"); status != http.StatusOK {
		t.Errorf("/metrics: %d", status)
	}
}

// TestLimiterMetricsClientLabels: by default the limiter's series count every client
// together and no client id appears anywhere in /metrics; with
// PORTCULLIS_METRICS_CLIENT_LABELS they are by client.
func TestLimiterMetricsClientLabels(t *testing.T) {
	const client = "premium-app" // its tier has a request limit: the limiter counts it
	t.Run("off by default", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		e.chat(t, e.token(t, client), "gpt-4o")
		m := e.metrics(t)
		if !strings.Contains(m, "\nportcullis_limits_admitted_total 1\n") {
			t.Errorf("/metrics lacks the aggregate admitted count:\n%s", grep(m, "portcullis_limits_"))
		}
		if !strings.Contains(m, `portcullis_limits_denied_total{reason="requests"} 0`) {
			t.Errorf("/metrics lacks the aggregate denied count by reason:\n%s", grep(m, "portcullis_limits_"))
		}
		if strings.Contains(m, client) || strings.Contains(m, `client="`) {
			t.Errorf("/metrics names a client:\n%s", grep(m, "client"))
		}
	})
	t.Run("on", func(t *testing.T) {
		e := newEnv(t, envOptions{configure: func(c *app.Config) { c.MetricsClientLabels = true }})
		e.chat(t, e.token(t, client), "gpt-4o")
		if m := e.metrics(t); !strings.Contains(m, `portcullis_limits_admitted_total{client="`+client+`"} 1`) {
			t.Errorf("/metrics lacks the admitted count of %s:\n%s", client, grep(m, "portcullis_limits_"))
		}
	})
}

// grep returns the lines of s that contain sub.
func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestMetricsListenerOffAndBusy: "off" (or leaving a hand-built Config's
// MetricsListen empty) runs no metrics listener; an address already taken fails
// Start, naming it.
func TestMetricsListenerOffAndBusy(t *testing.T) {
	off := newEnv(t, envOptions{configure: func(c *app.Config) { c.MetricsListen = "off" }})
	if addr := off.app.MetricsAddr(); addr != "" {
		t.Errorf("MetricsListen off: MetricsAddr() = %q", addr)
	}
	unset := newEnv(t, envOptions{configure: func(c *app.Config) { c.MetricsListen = "" }})
	if addr := unset.app.MetricsAddr(); addr != "" {
		t.Errorf("MetricsListen unset in a hand-built Config: MetricsAddr() = %q", addr)
	}

	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	ns := natstest.StartWith(t, natstest.Options{NoConn: true})
	a, err := app.Start(t.Context(), app.Config{
		AuditSpoolDir: filepath.Join(t.TempDir(), "audit-spool"), Region: "eu", Listen: "127.0.0.1:0",
		MetricsListen: taken.Addr().String(), NATSURL: ns.URL(), WorkerID: "busy",
		JWTIssuer: "http://127.0.0.1:1/issuer", JWKSURL: "http://127.0.0.1:1/jwks.json", PolicyPublicKeys: policyPublicKeys,
		EgressAllowHosts: "127.0.0.1",
	}, logging.New(io.Discard, "info"))
	if err == nil {
		_ = a.Stop(context.Background())
		t.Fatal("Start succeeded with the metrics address taken")
	}
	if !strings.Contains(err.Error(), "metrics listener on "+taken.Addr().String()) {
		t.Errorf("Start error = %v, want one naming the metrics address", err)
	}
}
