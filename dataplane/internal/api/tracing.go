package api

import (
	"context"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/dataplane/internal/policycache"
	"github.com/portcullis-gw/portcullis/dataplane/internal/tracing"
	"github.com/portcullis-gw/portcullis/dataplane/internal/upstream"
	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// The request's spans (docs/tracing.md): a server span per API request, and under
// it auth, guardrails, guard, limits, routing, one span per upstream attempt, and
// relay. With tracing off (a nil Options.Tracer) each costs a nil check and
// allocates nothing; the helpers here return early before they work out a name or
// an attribute.

var _ upstream.TraceInjector = (*tracing.Tracer)(nil)

// Names of the request's inner spans.
const (
	spanAuth       = "auth"
	spanGuardrails = "guardrails"
	spanGuard      = "guard"
	spanLimits     = "limits"
	spanRouting    = "routing"
	spanRelay      = "relay"
)

// tracedRoute reports whether requests on route get a server span: the API's
// routes, not health checks or unknown paths.
func tracedRoute(route string) bool {
	switch route {
	case upstream.PathChatCompletions, upstream.PathCompletions, upstream.PathEmbeddings, messagesRoute, modelsRoute:
		return true
	}
	return false
}

// startRequestSpan starts the server span of the request c serves, named after its
// method and route until its model is known, and makes its context the request's,
// so that the inner spans are its children. The client's trace context is its
// parent, when the configuration accepts it.
func (s *server) startRequestSpan(c echo.Context, ri *requestInfo) tracing.Span {
	if s.Tracer == nil || !tracedRoute(c.Path()) {
		return tracing.Span{}
	}
	req := c.Request()
	ctx, span := s.Tracer.StartServer(req.Context(), req.Method+" "+c.Path(), req.Header)
	c.SetRequest(req.WithContext(ctx))
	if span.Recording() {
		span.SetString(tracing.HTTPRequestMethod, req.Method)
		span.SetString(tracing.HTTPRoute, c.Path())
		span.SetString(tracing.RequestID, ri.id)
		span.SetString(tracing.Region, s.Region)
	}
	return span
}

// endRequestSpan ends the request's server span with what the request came to:
// its status, client, models, deployment, fallback and tokens. A request for a
// model the policy has is named like "chat gpt-4o-mini".
func endRequestSpan(span tracing.Span, ri *requestInfo, status int) {
	if !span.Recording() {
		span.End()
		return
	}
	span.SetInt(tracing.HTTPResponseStatusCode, int64(status))
	span.SetString(tracing.ClientID, ri.clientID)
	span.SetString(tracing.Tenant, ri.tenant)
	if op := genAIOperation(ri.operation); op != "" {
		span.SetString(tracing.GenAIOperationName, op)
		span.SetString(tracing.GenAIRequestModel, ri.model)
		if ri.model != "" && ri.model != unknownModel {
			span.SetName(op + " " + ri.model)
		}
	}
	if dep := ri.route.Deployment; dep != nil {
		span.SetString(tracing.GenAISystem, dep.ProviderKind)
		if status/100 == 2 {
			span.SetString(tracing.GenAIResponseModel, ri.route.UpstreamModel)
		}
	}
	span.SetString(tracing.Deployment, ri.deployment)
	span.SetString(tracing.Fallback, ri.fallback)
	span.SetString(tracing.FallbackReason, ri.fallbackReason)
	if ri.tokensIn > 0 || ri.tokensOut > 0 {
		span.SetInt(tracing.GenAIUsageInputTokens, ri.tokensIn)
		span.SetInt(tracing.GenAIUsageOutputTokens, ri.tokensOut)
	}
	if ri.errCode != "" {
		span.SetString(tracing.ErrorType, ri.errCode)
		if status >= 500 { // a client's error is not the server span's failure
			span.Fail(ri.errCode)
		}
	}
	span.End()
}

// genAIOperation is the gen_ai.operation.name of op: Anthropic's Messages API is
// chat; "" for no operation (the model list).
func genAIOperation(op string) string {
	switch op {
	case policy.OpChat, policy.OpMessages:
		return "chat"
	case policy.OpTextCompletion:
		return "text_completion"
	case policy.OpEmbeddings:
		return "embeddings"
	}
	return ""
}

// endSpan ends span, failed with err's code when err is not nil.
func endSpan(span tracing.Span, err error) {
	if err != nil && span.Recording() {
		span.Fail(string(apierr.From(err).Code))
	}
	span.End()
}

// startAttempt starts the client span of the request's attempt number n at route,
// and returns the context the upstream call is made in (the span's, so that its
// traceparent is what the upstream gets). A fallback attempt says why it fell back.
func (s *server) startAttempt(ctx context.Context, ri *requestInfo, route policycache.Route, x *exchange, n int) (context.Context, tracing.Span) {
	if s.Tracer == nil {
		return ctx, tracing.Span{}
	}
	dep := route.Deployment
	ctx, span := s.Tracer.StartClient(ctx, "attempt "+dep.Name)
	if span.Recording() {
		span.SetInt(tracing.Attempt, int64(n))
		span.SetString(tracing.Deployment, dep.Name)
		span.SetString(tracing.GenAISystem, dep.ProviderKind)
		span.SetString(tracing.GenAIOperationName, genAIOperation(x.req.op))
		span.SetString(tracing.GenAIRequestModel, route.UpstreamModel)
		span.SetString(tracing.FallbackReason, ri.fallbackReason)
	}
	return ctx, span
}

// traceInjector is what writes the trace context into a call to dep: the tracer
// when the configuration propagates it to dep's kind of deployment, else nil.
func (s *server) traceInjector(dep *policycache.Deployment) upstream.TraceInjector {
	if !s.Tracer.Propagates(dep.Kind) {
		return nil
	}
	return s.Tracer
}

// startRelay starts the span of relaying attempt n's answer from dep, of status,
// to the client; none for an answer that becomes an error instead (see
// reachesClient).
func (s *server) startRelay(ctx context.Context, dep string, n int, stream bool, status int) tracing.Span {
	if s.Tracer == nil || !reachesClient(status) {
		return tracing.Span{}
	}
	_, span := s.Tracer.Start(ctx, spanRelay)
	if span.Recording() {
		span.SetString(tracing.Deployment, dep)
		span.SetInt(tracing.Attempt, int64(n))
		span.SetBool(tracing.Stream, stream)
	}
	return span
}
