package app

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

// scrape returns the control plane's /metrics text, from its metrics listener.
func scrape(t *testing.T, a *App) string {
	t.Helper()
	if a.MetricsAddr() == "" {
		t.Fatal("the control plane has no metrics listener")
	}
	r := do(t, http.MethodGet, "http://"+a.MetricsAddr()+"/metrics", "", "")
	if r.status != http.StatusOK {
		t.Fatalf("/metrics on the metrics listener: %d %s", r.status, r.body)
	}
	return r.body
}

// TestMetricsOnTheirOwnListener: /metrics is served on the metrics listener and
// answers 404 on the HTTP server, which keeps /healthz and /readyz; /debug/pprof/
// is served only on the metrics listener, and only with pprof on.
func TestMetricsOnTheirOwnListener(t *testing.T) {
	t.Run("pprof off by default", func(t *testing.T) {
		a, _ := startApp(t)
		base := "http://" + a.Addr()
		if a.MetricsAddr() == a.Addr() {
			t.Fatalf("the metrics listener is the HTTP server's address %s", a.Addr())
		}
		if r := do(t, http.MethodGet, base+"/metrics", "", ""); r.status != http.StatusNotFound {
			t.Fatalf("the HTTP server answers /metrics with %d, want 404", r.status)
		}
		if r := do(t, http.MethodGet, base+"/healthz", "", ""); r.status != http.StatusOK {
			t.Errorf("the HTTP server answers /healthz with %d, want 200", r.status)
		}
		waitfor.That(t, "/readyz on the HTTP server to answer 200", func() bool {
			return do(t, http.MethodGet, base+"/readyz", "", "").status == http.StatusOK
		})
		if m := scrape(t, a); !strings.Contains(m, `portcullis_controlplane_http_requests_total{method="GET",route="/healthz",status="200"}`) {
			t.Errorf("the metrics listener's /metrics lacks the HTTP server's requests:\n%s", m)
		}
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/cmdline"} {
			if r := do(t, http.MethodGet, "http://"+a.MetricsAddr()+path, "", ""); r.status != http.StatusNotFound {
				t.Errorf("pprof is off by default, but the metrics listener answers %s with %d", path, r.status)
			}
			if r := do(t, http.MethodGet, base+path, "", ""); r.status != http.StatusNotFound {
				t.Errorf("the HTTP server answers %s with %d, want 404", path, r.status)
			}
		}
	})
	t.Run("pprof on", func(t *testing.T) {
		a, _ := startApp(t, func(c *Config) { c.Pprof = true })
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline", "/debug/pprof/symbol"} {
			if r := do(t, http.MethodGet, "http://"+a.MetricsAddr()+path, "", ""); r.status != http.StatusOK {
				t.Errorf("with pprof on, the metrics listener answers %s with %d, want 200", path, r.status)
			}
			if r := do(t, http.MethodGet, "http://"+a.Addr()+path, "", ""); r.status != http.StatusNotFound {
				t.Errorf("with pprof on, the HTTP server answers %s with %d, want 404", path, r.status)
			}
		}
	})
	t.Run("off", func(t *testing.T) {
		for _, listen := range []string{"off", ""} {
			a, _ := startApp(t, func(c *Config) { c.MetricsListen = listen })
			if addr := a.MetricsAddr(); addr != "" {
				t.Errorf("MetricsListen %q: MetricsAddr() = %q, want none", listen, addr)
			}
		}
	})
}

// TestLoadConfigMetricsKeys: the metrics listener is on loopback by default with
// pprof off; "off" and a non-loopback address are accepted; a bad value is an
// error naming its key.
func TestLoadConfigMetricsKeys(t *testing.T) {
	base := map[string]string{"PORTCULLIS_DATABASE_URL": "postgres://postgres@127.0.0.1:5432/portcullis"}
	with := func(extra map[string]string) func(string) string {
		vars := map[string]string{}
		for k, v := range base {
			vars[k] = v
		}
		for k, v := range extra {
			vars[k] = v
		}
		return env(vars)
	}
	cfg, _, err := LoadConfig(nil, with(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MetricsListen != "127.0.0.1:9465" || cfg.Pprof {
		t.Fatalf("defaults: metrics listen %q, pprof %v", cfg.MetricsListen, cfg.Pprof)
	}
	for _, tc := range []struct {
		vars   map[string]string
		args   []string
		listen string
		pprof  bool
	}{
		{vars: map[string]string{"PORTCULLIS_METRICS_LISTEN": "off"}, listen: "off"},
		{vars: map[string]string{"PORTCULLIS_METRICS_LISTEN": "0.0.0.0:9465", "PORTCULLIS_PPROF": "true"}, listen: "0.0.0.0:9465", pprof: true},
		{vars: map[string]string{"PORTCULLIS_PPROF": "true"}, args: []string{"--metrics-listen", "127.0.0.1:0", "--pprof=false"}, listen: "127.0.0.1:0"},
	} {
		cfg, _, err := LoadConfig(tc.args, with(tc.vars), io.Discard)
		if err != nil {
			t.Fatalf("%v %v: %v", tc.vars, tc.args, err)
		}
		if cfg.MetricsListen != tc.listen || cfg.Pprof != tc.pprof {
			t.Errorf("%v %v: metrics listen %q, pprof %v", tc.vars, tc.args, cfg.MetricsListen, cfg.Pprof)
		}
	}
	for _, tc := range []struct {
		vars map[string]string
		args []string
		want string
	}{
		{vars: map[string]string{"PORTCULLIS_METRICS_LISTEN": "9465"}, want: `PORTCULLIS_METRICS_LISTEN="9465"`},
		{vars: map[string]string{"PORTCULLIS_METRICS_LISTEN": ":9465"}, want: `PORTCULLIS_METRICS_LISTEN=":9465"`},
		{vars: map[string]string{"PORTCULLIS_METRICS_LISTEN": "127.0.0.1:99999"}, want: `PORTCULLIS_METRICS_LISTEN="127.0.0.1:99999"`},
		{vars: map[string]string{"PORTCULLIS_METRICS_LISTEN": "none"}, want: `PORTCULLIS_METRICS_LISTEN="none"`},
		{args: []string{"--metrics-listen", ""}, want: `PORTCULLIS_METRICS_LISTEN=""`},
		{vars: map[string]string{"PORTCULLIS_PPROF": "on"}, want: `PORTCULLIS_PPROF="on"`},
	} {
		_, _, err := LoadConfig(tc.args, with(tc.vars), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: error %v, want one naming %s", tc.vars, tc.args, err, tc.want)
		}
	}
}
