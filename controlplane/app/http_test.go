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
