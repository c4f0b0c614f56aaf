package httpmetrics

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestCheckListen(t *testing.T) {
	for _, tc := range []struct {
		value string
		ok    bool
	}{
		{"127.0.0.1:9464", true},
		{"127.0.0.1:0", true},
		{"0.0.0.0:9464", true},
		{"[::1]:9464", true},
		{"localhost:9464", true},
		{"off", true},
		{"", false},
		{"OFF", false},
		{"9464", false},
		{":9464", false}, // every interface must be asked for explicitly
		{"127.0.0.1:http", false},
		{"127.0.0.1:70000", false},
		{"127.0.0.1:-1", false},
	} {
		if reason := CheckListen(tc.value); (reason == "") != tc.ok {
			t.Errorf("CheckListen(%q) = %q, want ok %v", tc.value, reason, tc.ok)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:9464": true, "[::1]:1": true, "localhost:1": true, "127.1.2.3:1": true,
		"0.0.0.0:9464": false, "[::]:1": false, "10.0.0.1:1": false, "example.com:1": false, "junk": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

// TestMux: /metrics always; /debug/pprof/ only when asked for; nothing else.
func TestMux(t *testing.T) {
	m := New("portcullis_test")
	m.Observe("/v1/x", http.MethodGet, 200, time.Millisecond)
	off := m.Mux(false)
	if code, body := get(t, off, "/metrics"); code != http.StatusOK || !strings.Contains(body, "portcullis_test_http_requests_total") {
		t.Fatalf("/metrics: %d\n%s", code, body)
	}
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/cmdline", "/debug/pprof/symbol", "/", "/healthz"} {
		if code, _ := get(t, off, path); code != http.StatusNotFound {
			t.Errorf("without pprof, %s answers %d, want 404", path, code)
		}
	}
	on := m.Mux(true)
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/goroutine", "/debug/pprof/cmdline", "/debug/pprof/symbol", "/metrics"} {
		if code, _ := get(t, on, path); code != http.StatusOK {
			t.Errorf("with pprof, %s answers %d, want 200", path, code)
		}
	}
	if code, body := get(t, on, "/debug/pprof/"); !strings.Contains(body, "goroutine") {
		t.Errorf("the pprof index (%d) lists no goroutine profile:\n%s", code, body)
	}
}

func TestListen(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	m := New("portcullis_test")
	s, err := m.Listen(t.Context(), ListenOff, true, log)
	if err != nil || s != nil || s.Addr() != "" || s.Run(t.Context()) != nil {
		t.Fatalf("off: %v, %v", s, err)
	}
	s.Close()
	if _, err := m.Listen(t.Context(), "nowhere", false, log); err == nil || !strings.Contains(err.Error(), KeyListen) {
		t.Fatalf("a bad address: %v, want an error naming %s", err, KeyListen)
	}

	s, err = m.Listen(t.Context(), "127.0.0.1:0", false, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- s.Run(ctx) }()
	resp, err := http.Get("http://" + s.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "go_goroutines") {
		t.Fatalf("/metrics: %d\n%s", resp.StatusCode, body)
	}
	http.DefaultClient.CloseIdleConnections()
	s.Close()
	select {
	case err := <-ran:
		if err != nil {
			t.Fatalf("Run after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after Close")
	}

	// A listener that fails is the component's failure, which stops the process.
	s, err = m.Listen(t.Context(), "127.0.0.1:0", false, log)
	if err != nil {
		t.Fatal(err)
	}
	_ = s.ln.Close()
	if err := s.Run(ctx); err == nil {
		t.Fatal("Run on a failed listener returned nil")
	}
	s.Close()
}

// TestMethodBoundsTheLabel: a client's made-up method is recorded as OTHER, in the
// metrics as in what Method gives logs.
func TestMethodBoundsTheLabel(t *testing.T) {
	for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"} {
		if got := Method(m); got != m {
			t.Fatalf("Method(%q) = %q", m, got)
		}
	}
	for _, m := range []string{"get", "PROPFIND", strings.Repeat("X", 1000), ""} {
		if got := Method(m); got != OtherMethod {
			t.Fatalf("Method(%.20q) = %q, want %s", m, got, OtherMethod)
		}
	}
	h := New("test")
	h.Observe("/x", "MADE-UP-METHOD", 405, time.Millisecond)
	rec := httptest.NewRecorder()
	h.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if body := rec.Body.String(); strings.Contains(body, "MADE-UP-METHOD") || !strings.Contains(body, `method="OTHER"`) {
		t.Fatal("the metrics carry the client's method")
	}
}
