// Package api serves the data plane's HTTP API: OpenAI's chat completions,
// completions, embeddings and models, and Anthropic's Messages API. It runs each
// request through the request path (size and shape, authentication, client
// resolution, authorization, global limits, routing with residency, balancing and
// fallback, the upstream call with retries and breakers, the audit event) and
// renders every failure in the API family's error schema (OpenAI's, or Anthropic's
// on /v1/messages) through one error handler. It also serves /healthz and /readyz;
// /metrics is not on the API port but on the worker's metrics listener (see
// httpmetrics.Server), so that this handler answers it 404.
//
// Each upstream call goes through the translator of its pair of client API and
// provider (translator.go: the registration table, one file per translator), the
// one place that knows a provider's wire protocol; Options.Guard sees request text
// and streamed answers there.
package api

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/portcullis-gw/portcullis/dataplane/internal/auth"
	"github.com/portcullis-gw/portcullis/dataplane/internal/policycache"
	"github.com/portcullis-gw/portcullis/dataplane/internal/tracing"
	"github.com/portcullis-gw/portcullis/dataplane/internal/upstream"
	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/httpmetrics"
	"github.com/portcullis-gw/portcullis/shared/logging"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// Response headers.
const (
	HeaderFallback  = "X-Portcullis-Fallback"
	HeaderRequestID = "X-Request-Id" // the gateway's id of the request
	// HeaderClientRequestID echoes a client's own X-Request-Id, when it was sane.
	HeaderClientRequestID = "X-Client-Request-Id"
	HeaderRegion          = "X-Portcullis-Region"
	HeaderDeployment      = "X-Portcullis-Deployment"
)

// PolicySource yields the policy in use, or nil before the first snapshot.
type PolicySource interface {
	Current() *policycache.Policy
}

// TokenVerifier checks an Authorization header value.
type TokenVerifier interface {
	Verify(ctx context.Context, authorization string, revoked auth.Revocations) (auth.Identity, error)
}

var (
	_ PolicySource     = (*policycache.Cache)(nil)
	_ TokenVerifier    = (*auth.Verifier)(nil)
	_ auth.Revocations = (*policycache.Policy)(nil)
)

// Options configures the API.
type Options struct {
	Policy               PolicySource
	Verifier             TokenVerifier
	Limiter              Admitter    // nil: no limits are enforced
	LimitsReady          func() bool // nil or true: limits can be applied (/readyz)
	Region               string      // the worker's region
	Worker               string      // the worker's id, in audit events
	ExposeRoutingHeaders bool        // add X-Portcullis-Region and X-Portcullis-Deployment
	MaxBodyBytes         int64
	// FallbackErrorRate: a deployment whose error rate is above it falls back to
	// the policy's fallback model (default 0.1).
	FallbackErrorRate float64
	Log               *slog.Logger
	Metrics           *httpmetrics.HTTP
	// Audit receives one event per API request (nil: none); AuditKey keys the
	// prompt and response hashes, and AuditHeaders lists the request headers an
	// event records (nil: audit.DefaultHeaders).
	Audit        Auditor
	AuditKey     []byte
	AuditHeaders []string
	// MaxUnauthenticated bounds the requests this worker authenticates at once;
	// beyond it a request is refused with 503 overloaded and Retry-After (0: no
	// bound).
	MaxUnauthenticated int
	// TrustedProxies may say where a request came from (X-Forwarded-For); see
	// TrustedProxies.ClientAddr.
	TrustedProxies TrustedProxies
	// Guard sees every request's text and each streamed text delta of its answer
	// (nil: none); see Guard.
	Guard Guard
	// Classifier scores request texts for prompt injection where a client's
	// guardrail policy asks for it (nil: none, which a fail_closed policy refuses).
	Classifier Classifier
	// PolicyAge says how long ago the policy in use was last confirmed current (ok
	// false before the first); past PolicyMaxAge (0: never) /readyz answers 503
	// policy_too_old. Requests are still served with the policy in use.
	PolicyAge    func() (age time.Duration, ok bool)
	PolicyMaxAge time.Duration
	// Tracer traces each API request (nil: tracing is off, and costs a nil check
	// per span); see docs/tracing.md.
	Tracer *tracing.Tracer
}

type server struct {
	Options
	unauthenticated chan struct{} // a slot per request being authenticated; nil: no bound
	guardMetrics    *guardMetrics
	latency         *latencyMetrics  // nil without Metrics
	lines           *logging.Handler // builds access log lines by hand; nil: through slog
}

// proxiedRoutes are the routes whose requests go to an upstream.
var proxiedRoutes = []string{upstream.PathChatCompletions, upstream.PathCompletions, upstream.PathEmbeddings, messagesRoute}

// New returns the API's HTTP handler.
func New(o Options) http.Handler {
	s := &server{Options: o, lines: logging.Lines(o.Log)}
	if o.Metrics != nil {
		s.guardMetrics = newGuardMetrics(o.Metrics.Registry)
		s.latency = newLatencyMetrics(o.Metrics.Registry, proxiedRoutes)
	}
	if o.MaxUnauthenticated > 0 {
		s.unauthenticated = make(chan struct{}, o.MaxUnauthenticated)
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	e.Use(s.observe, middleware.RecoverWithConfig(middleware.RecoverConfig{DisablePrintStack: true}))

	e.POST("/v1/chat/completions", s.proxy(apiOpenAI, policy.OpChat, upstream.PathChatCompletions))
	e.POST("/v1/completions", s.proxy(apiOpenAI, policy.OpTextCompletion, upstream.PathCompletions))
	e.POST("/v1/embeddings", s.proxy(apiOpenAI, policy.OpEmbeddings, upstream.PathEmbeddings))
	e.POST(messagesRoute, s.proxy(apiAnthropic, policy.OpMessages, upstream.PathMessages))
	e.GET(modelsRoute, s.listModels)

	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	return e
}

func (s *server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

func (s *server) readyz(c echo.Context) error {
	p := s.Policy.Current()
	if p == nil {
		return errPolicyNotReady
	}
	if s.LimitsReady != nil && !s.LimitsReady() {
		return apierr.New(apierr.LimitsUnavailable, "the gateway cannot reach its global limit counters")
	}
	body := map[string]any{"status": "ready", "policy_version": p.Version}
	if s.PolicyAge != nil {
		age, ok := s.PolicyAge()
		if ok && s.PolicyMaxAge > 0 && age > s.PolicyMaxAge {
			return apierr.New(apierr.PolicyTooOld, "the gateway's policy (version %d) was last confirmed current %s ago, "+
				"more than PORTCULLIS_POLICY_MAX_AGE (%s): it may have lost contact with NATS", p.Version, age.Round(time.Second), s.PolicyMaxAge)
		}
		if ok {
			body["policy_age_seconds"] = int64(age / time.Second)
		}
	}
	return c.JSON(http.StatusOK, body)
}

// messagesRoute is Anthropic's Messages API, served natively by Anthropic deployments.
const messagesRoute = "/v1/messages"

// modelsRoute lists the models a client may use.
const modelsRoute = "/v1/models"

var errPolicyNotReady = apierr.New(apierr.PolicyNotReady, "the gateway has not received its policy yet; retry shortly")
