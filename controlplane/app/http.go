package app

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/portcullis-gw/portcullis/shared/httpmetrics"
)

// readyTimeout bounds the Postgres ping of one /readyz.
const readyTimeout = 2 * time.Second

// observe records every request's route pattern, method, status and latency, and
// renders a handler error first so that the recorded status is the one sent.
func observe(m *httpmetrics.HTTP, log *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			if err := next(c); err != nil {
				c.Error(err)
			}
			route := c.Path()
			if route == "" {
				route = "unmatched"
			}
			status := c.Response().Status
			d := time.Since(start)
			m.Observe(route, c.Request().Method, status, d)
			log.Debug("http request", "method", httpmetrics.Method(c.Request().Method), "route", route, "status", status,
				"duration_ms", d.Milliseconds(), "request_id", c.Response().Header().Get(echo.HeaderXRequestID))
			return nil
		}
	}
}

// recoverPanics turns a handler panic into a 500 (rendered by the error handler) and
// logs it with its stack.
func recoverPanics(log *slog.Logger) echo.MiddlewareFunc {
	return middleware.RecoverWithConfig(middleware.RecoverConfig{
		LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
			log.Error("handler panic", "route", c.Path(), "err", err, "stack", string(stack))
			return err
		},
	})
}

// readiness reports whether this replica can serve: Postgres answers, NATS is
// connected, and a policy snapshot has been published (or found current).
type readiness struct {
	pingDB        func(context.Context) error
	natsConnected func() bool
	published     func() int64
}

func (r readiness) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

func (r readiness) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), readyTimeout)
	defer cancel()
	checks := map[string]string{"postgres": "ok", "nats": "ok", "policy": "ok"}
	ready := true
	if err := r.pingDB(ctx); err != nil {
		checks["postgres"], ready = "unreachable", false
	}
	if !r.natsConnected() {
		checks["nats"], ready = "disconnected", false
	}
	if r.published() == 0 {
		checks["policy"], ready = "not published yet", false
	}
	status, word := http.StatusOK, "ready"
	if !ready {
		status, word = http.StatusServiceUnavailable, "not ready"
	}
	return c.JSON(status, map[string]any{"status": word, "checks": checks})
}

// ipExtractor reads a request's client address: the peer's, or with trusted proxy
// CIDRs the first address in X-Forwarded-For that none of them holds. Echo's default
// would believe any X-Forwarded-For, which lets a caller write its own source into
// the change history.
func ipExtractor(trusted []string) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, cidr := range trusted {
		n, err := parseCIDR(cidr)
		if err == nil { // Validate refused bad ones
			opts = append(opts, echo.TrustIPRange(n))
		}
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}

// dropClientRequestID removes a request's own X-Request-Id, so that the id the
// change history and the logs record is always the server's (middleware.RequestID
// would keep the caller's, which could then name someone else's request).
func dropClientRequestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		c.Request().Header.Del(echo.HeaderXRequestID)
		return next(c)
	}
}
