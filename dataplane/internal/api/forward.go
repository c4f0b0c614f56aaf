package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/dataplane/internal/policycache"
	"github.com/portcullis-gw/portcullis/dataplane/internal/router"
	"github.com/portcullis-gw/portcullis/dataplane/internal/tracing"
	"github.com/portcullis-gw/portcullis/dataplane/internal/upstream"
	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// forward calls the request's upstream and relays the answer. routes are the
// compliant candidates, preferred first. Each attempt goes to the first candidate
// whose breaker lets it through; a failed attempt (no answer, 5xx, 429) is retried,
// after a jittered backoff or the upstream's Retry-After, while the preferred
// deployment's max_attempts and retry budget allow and nothing has reached the
// client yet. Once an answer is being relayed, nothing is retried.
//
// last is the deployment the last attempt went to, nil when none could be made
// (every breaker open): a fallback after a failed attempt is paid from its retry
// budget.
func (s *server) forward(c echo.Context, routes []policycache.Route, x *exchange) (last *upstream.Target, err error) {
	ctx := c.Request().Context()
	maxAttempts := 1
	if t := routes[0].Deployment.Target; t != nil {
		maxAttempts = t.MaxAttempts()
	}
	var lastErr error
	var tried uint64 // bit i: routes[i] had an attempt
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		i, report, err := pickRoute(routes, tried)
		if err != nil {
			if lastErr != nil {
				return last, lastErr // the failure that opened the breakers says more
			}
			return last, err
		}
		route := routes[i]
		tried |= 1 << (i % 64)
		last = route.Deployment.Target
		if attempt == 1 {
			last.OnFirstAttempt()
		}
		res := s.attempt(c, route, report, x, attempt < maxAttempts)
		if !res.retryable {
			return last, res.err
		}
		lastErr = res.err
		waited := time.Now()
		retry := s.waitToRetry(ctx, last, attempt, maxAttempts, res.wait)
		info(c).upstreamTime += time.Since(waited)
		if !retry {
			return last, res.err
		}
	}
	return last, lastErr
}

// attemptResult is how one attempt ended.
type attemptResult struct {
	err       error
	retryable bool          // it failed with nothing sent to the client, and may be retried
	wait      time.Duration // the upstream's Retry-After, if it gave one
}

// attempt makes one call to route within the deployment's total timeout, through
// the translator of the route's pair of client API and provider, and, unless it
// failed in a way worth retrying (and more attempts are left), relays the answer.
// report gets the attempt's outcome for the deployment's breaker.
func (s *server) attempt(c echo.Context, route policycache.Route, report func(upstream.Outcome), x *exchange, more bool) attemptResult {
	ctx := c.Request().Context()
	dep := route.Deployment
	ri := info(c)
	ri.deployment = dep.Name
	pair, ok := translationFor(x.req.api, dep.ProviderKind, x.req.op)
	if !ok {
		report(upstream.Ignored)
		return attemptResult{err: notServed(x.req, dep)}
	}
	tr := pair.new(x)
	upPath, body, err := tr.request(x.req, route.UpstreamModel)
	if err != nil {
		report(upstream.Ignored)
		return attemptResult{err: err}
	}
	ri.attempts++
	n := ri.attempts
	actx, span := s.startAttempt(ctx, ri, route, x, n)
	actx, cancel := context.WithTimeout(actx, dep.Target.TotalTimeout())
	defer cancel()
	ri.provider, ri.route = dep.Provider, route
	sent := time.Now()
	defer func() { ri.upstreamTime += time.Since(sent) }()
	resp, keyVersion, err := dep.Target.Send(actx, upstream.Call{Path: upPath, Body: body, RequestID: ri.id, Key: pair.key,
		Trace: s.traceInjector(dep)})
	ri.upstreamLatency += time.Since(sent)
	ri.keyVersion = keyVersion
	if err != nil {
		endSpan(span, err)
		if ctx.Err() != nil {
			report(upstream.Ignored) // the client went away
			return attemptResult{err: err}
		}
		report(upstream.Failure)
		return attemptResult{err: err, retryable: true}
	}
	defer resp.Body.Close()
	span.SetInt(tracing.HTTPResponseStatusCode, int64(resp.StatusCode))
	if upstream.RetryableStatus(resp.StatusCode) && more {
		if wait, ok := upstream.RetryAfter(resp.Header); !ok || wait <= upstream.RetryAfterCap {
			upstream.Discard(resp.Body)
			report(upstream.Failure)
			err := apierr.Wrap(apierr.UpstreamError, fmt.Errorf("deployment %s answered %d", dep.Name, resp.StatusCode),
				"the upstream failed to answer")
			if resp.StatusCode == http.StatusTooManyRequests {
				err = apierr.Wrap(apierr.RateLimited, fmt.Errorf("deployment %s answered 429", dep.Name),
					"the upstream is rate limiting requests; retry later")
			}
			endSpan(span, err)
			return attemptResult{err: err, retryable: true, wait: wait}
		}
	}
	if resp.StatusCode >= 400 && span.Recording() {
		span.Fail(upstreamErrorType(resp.StatusCode))
	}
	span.End() // the attempt has its answer; the relay is a span of its own
	if s.ExposeRoutingHeaders {
		c.Response().Header().Set(HeaderDeployment, dep.Name)
	}
	x.tr = tr
	relaySpan := s.startRelay(ctx, dep.Name, n, x.req.Stream, resp.StatusCode)
	err = tr.relay(c, resp, dep.Name)
	endSpan(relaySpan, err)
	report(outcome(ctx, resp.StatusCode, err))
	if errors.Is(err, errStreamNotStarted) && !c.Response().Committed {
		x.tr = nil // nothing reached the client: the attempt may be retried
		return attemptResult{err: err, retryable: true}
	}
	return attemptResult{err: err}
}

// upstreamErrorType is the error.type of an attempt the upstream answered with
// status, 400 or more: the code the gateway maps it to, or for the upstream's own
// client errors, which are relayed, the status.
func upstreamErrorType(status int) string {
	switch {
	case status == http.StatusTooManyRequests:
		return string(apierr.RateLimited)
	case status == http.StatusUnauthorized, status == http.StatusForbidden, status >= 500:
		return string(apierr.UpstreamError)
	}
	return strconv.Itoa(status)
}

// pickRoute returns the index of the candidate the next attempt goes to, with the
// function that reports the attempt's outcome: the first one whose breaker lets a
// call through and that has not been tried yet (tried has bit i set for routes[i]),
// so that a retry goes to another deployment of the model when there is one, else
// the first one whose breaker lets a call through. With every breaker open it
// returns the first refusal; a deployment that could not be built is skipped, or
// reported when it is the only one.
func pickRoute(routes []policycache.Route, tried uint64) (int, func(upstream.Outcome), error) {
	var first error
	for _, fresh := range []bool{true, false} {
		for i, r := range routes {
			if fresh == (tried&(1<<(i%64)) != 0) {
				continue
			}
			dep := r.Deployment
			if dep.Target == nil {
				if first == nil {
					first = apierr.Wrap(apierr.UpstreamUnavailable, fmt.Errorf("deployment %s: %w", dep.Name, dep.BuildErr),
						"the upstream serving this model is misconfigured")
				}
				continue
			}
			report, err := dep.Target.Allow()
			if err != nil {
				if first == nil {
					first = err
				}
				continue
			}
			return i, report, nil
		}
	}
	return 0, nil, first
}

// waitToRetry decides whether attempt may be followed by another and waits for it:
// the upstream's Retry-After if it gave one, else a jittered backoff. It reports
// false when no retry is left, the budget is spent, or the client went away.
func (s *server) waitToRetry(ctx context.Context, t *upstream.Target, attempt, maxAttempts int, retryAfter time.Duration) bool {
	if attempt >= maxAttempts || !t.SpendRetry() {
		return false
	}
	wait := retryAfter
	if wait <= 0 {
		wait = t.Backoff(attempt)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// outcome classifies a relayed answer for the breaker: the client's own
// cancellation says nothing about the upstream, nor does a client error it
// answered; 5xx, 429, a refused key and a broken answer are failures.
func outcome(ctx context.Context, status int, relayErr error) upstream.Outcome {
	switch {
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled):
		return upstream.Ignored
	case upstream.RetryableStatus(status), status == http.StatusUnauthorized, status == http.StatusForbidden:
		return upstream.Failure
	case relayErr != nil && status/100 == 2 && !errors.As(relayErr, new(*guardStop)):
		return upstream.Failure // the answer broke off
	}
	return upstream.Success
}

// healthyRoutes orders the candidates for this request (router.Balance: a healthy
// deployment first, drawn by weight and recent latency), and when no primary
// candidate is healthy, routes to the policy's fallback model instead (see
// fallBack). With no usable fallback the primary candidates stay, and fail as they
// will.
func (s *server) healthyRoutes(c echo.Context, p *policycache.Policy, client *policycache.Client, req *request, routes []policycache.Route) []policycache.Route {
	provider := routes[0].Deployment.Provider
	ordered, ok, reason := router.Balance(routes, s.fallbackThreshold(p, provider))
	if ok {
		return ordered
	}
	if t, set := p.FallbackTrigger(provider); set && !triggered(t, reason) {
		return routes // the policy's enabled_when does not hold: no fallback
	}
	to, fallback := s.fallbackRoutes(p, client, req, routes)
	if fallback == nil {
		return routes
	}
	markFallback(c, to, reason)
	return fallback
}

// forwardWithFallback forwards the request to routes and, when every attempt there
// failed before any byte reached the client, sends the same request to the
// policy's fallback model (unless routes already are the fallback's): after
// retries ran out, with every breaker open, and after a connect error, a timeout,
// a 5xx, or a 429 whose Retry-After is too long to wait. The fallback call is a
// retry like any other: the last deployment tried pays for it from its retry
// budget, and with the budget spent the primary's failure stands.
func (s *server) forwardWithFallback(c echo.Context, p *policycache.Policy, client *policycache.Client, routes []policycache.Route, x *exchange) error {
	last, err := s.forward(c, routes, x)
	if err == nil || info(c).fallback != "" || !fallbackWorthy(c, err) {
		return err
	}
	to, fallback := s.fallbackRoutes(p, client, x.req, routes)
	if fallback == nil || (last != nil && !last.SpendRetry()) {
		return err
	}
	markFallback(c, to, fallbackReason(err))
	c.Response().Header().Del("Retry-After") // the primary's 429 is not the answer
	_, err = s.forward(c, fallback, x)
	return err
}

// fallbackRoutes returns the policy's fallback model for req's model (by the
// provider of routes, the primary candidates) and its candidates: filtered by the
// client's residency like every other, limited to deployments that can serve req,
// and balanced like the primary's. With no fallback, or no candidate left, the
// routes are nil.
func (s *server) fallbackRoutes(p *policycache.Policy, client *policycache.Client, req *request, routes []policycache.Route) (string, []policycache.Route) {
	to, ok := p.Fallback(routes[0].Deployment.Provider, req.Model)
	if !ok {
		return "", nil
	}
	candidates, err := router.Candidates(p, client, to)
	if err != nil {
		return "", nil
	}
	fallback := candidates[:0]
	for _, r := range candidates {
		if serves(r, req) {
			fallback = append(fallback, r)
		}
	}
	if len(fallback) == 0 {
		return "", nil
	}
	fallback, _, _ = router.Balance(fallback, s.fallbackThreshold(p, fallback[0].Deployment.Provider))
	return to, fallback
}

// triggered reports whether a provider's fallback trigger holds for the reason its
// deployments are unhealthy ("circuit_open" or "error_rate").
func triggered(t policy.FallbackTrigger, reason string) bool {
	switch reason {
	case "circuit_open":
		return t.CircuitOpen
	case "error_rate":
		return t.ErrorRateAbove != nil
	}
	return false
}

// markFallback records that the request fell back to the model to for reason: the
// X-Portcullis-Fallback header, the access log and the audit event.
func markFallback(c echo.Context, to, reason string) {
	c.Response().Header().Set(HeaderFallback, to)
	ri := info(c)
	ri.fallback, ri.fallbackReason = to, reason
}

// serves reports whether route's deployment can answer req: a translation carries
// req's API and operation to the deployment's provider.
func serves(route policycache.Route, req *request) bool {
	_, ok := translationFor(req.api, route.Deployment.ProviderKind, req.op)
	return ok
}

// fallbackWorthy reports whether a request whose attempts all failed with err may
// go to the fallback: nothing has reached the client, the client is still there,
// and the failure was the upstream's (unreachable, timed out, 5xx, 429, a refused
// or missing key, a failed TLS check, breakers open), not the request's.
func fallbackWorthy(c echo.Context, err error) bool {
	if c.Response().Committed || c.Request().Context().Err() != nil {
		return false
	}
	var e *apierr.Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Code {
	case apierr.UpstreamError, apierr.UpstreamTimeout, apierr.UpstreamUnavailable, apierr.UpstreamTLS,
		apierr.UpstreamKey, apierr.RateLimited:
		return true
	}
	return false
}

// fallbackReason is the fallback_reason of a request that fell back after its
// attempts failed with err: circuit_open when every breaker refused, else the
// stable code of the last failure (upstream_error, upstream_timeout, …).
func fallbackReason(err error) string {
	if errors.Is(err, upstream.ErrBreakerOpen) {
		return "circuit_open"
	}
	var e *apierr.Error
	if errors.As(err, &e) {
		return string(e.Code)
	}
	return string(apierr.UpstreamError)
}

// fallbackThreshold is the error rate above which a deployment of provider counts
// as unhealthy: the policy's fallback trigger's, else the data plane's own.
func (s *server) fallbackThreshold(p *policycache.Policy, provider string) float64 {
	if t, ok := p.FallbackTrigger(provider); ok && t.ErrorRateAbove != nil {
		return *t.ErrorRateAbove
	}
	if s.FallbackErrorRate <= 0 {
		return DefaultFallbackErrorRate
	}
	return s.FallbackErrorRate
}

// DefaultFallbackErrorRate is the error rate above which a deployment falls back.
const DefaultFallbackErrorRate = 0.1
