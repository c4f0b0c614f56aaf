package app

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
)

func TestReadyz(t *testing.T) {
	ok := func(context.Context) error { return nil }
	down := func(context.Context) error { return errors.New("connection refused") }
	tests := []struct {
		name       string
		r          readiness
		wantStatus int
		wantBody   string
	}{
		{"all good", readiness{ok, func() bool { return true }, func() int64 { return 3 }}, 200, `"ready"`},
		{"postgres down", readiness{down, func() bool { return true }, func() int64 { return 3 }}, 503, `"postgres":"unreachable"`},
		{"nats down", readiness{ok, func() bool { return false }, func() int64 { return 3 }}, 503, `"nats":"disconnected"`},
		{"nothing published", readiness{ok, func() bool { return true }, func() int64 { return 0 }}, 503, `"policy":"not published yet"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := echo.New()
			e.GET("/readyz", tt.r.readyz)
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			if rec.Code != tt.wantStatus || !strings.Contains(rec.Body.String(), tt.wantBody) {
				t.Fatalf("readyz = %d %s; want %d with %s", rec.Code, rec.Body, tt.wantStatus, tt.wantBody)
			}
			if strings.Contains(rec.Body.String(), "refused") {
				t.Fatal("readyz exposes the internal error")
			}
		})
	}
}

// TestIPExtractor: X-Forwarded-For is believed only from a trusted proxy, so that
// no caller writes its own source into the change history.
func TestIPExtractor(t *testing.T) {
	tests := []struct {
		name    string
		trusted []string
		peer    string
		want    string
	}{
		{"no proxies: the peer", nil, "203.0.113.7:4000", "203.0.113.7"},
		{"untrusted peer: the peer", []string{"10.0.0.0/8"}, "203.0.113.7:4000", "203.0.113.7"},
		{"trusted proxy: the client", []string{"10.0.0.0/8"}, "10.1.2.3:4000", "198.51.100.9"},
		{"a trusted address", []string{"10.1.2.3"}, "10.1.2.3:4000", "198.51.100.9"},
		{"loopback is not trusted by default", []string{"10.0.0.0/8"}, "127.0.0.1:4000", "127.0.0.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/admin/v1/whoami", nil)
			req.RemoteAddr = tc.peer
			req.Header.Set("X-Forwarded-For", "198.51.100.9")
			if got := ipExtractor(tc.trusted)(req); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

// TestRequestIDIsTheServers: a caller's own X-Request-Id is replaced, so that the
// change history's request_id always names the control plane's request.
func TestRequestIDIsTheServers(t *testing.T) {
	a, _ := startApp(t)
	req, _ := http.NewRequest(http.MethodGet, "http://"+a.Addr()+"/healthz", nil)
	req.Header.Set("X-Request-Id", "someone-elses")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if id := resp.Header.Get("X-Request-Id"); id == "" || id == "someone-elses" {
		t.Fatalf("X-Request-Id %q, want one of the server's", id)
	}
}
