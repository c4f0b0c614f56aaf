package api

import (
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/dataplane/internal/policycache"
	"github.com/portcullis-gw/portcullis/dataplane/internal/router"
	"github.com/portcullis-gw/portcullis/dataplane/internal/tracing"
	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// proxy handles one operation (op) of a client API, called on path. The token is
// verified from the headers before the body is read: a request without a valid
// token costs no more than its headers, and is audited without model or prompt.
func (s *server) proxy(api clientAPI, op, path string) echo.HandlerFunc {
	return func(c echo.Context) error {
		ri := info(c)
		ri.operation = op
		p := s.Policy.Current()
		if p == nil {
			return errPolicyNotReady
		}
		_, span := s.Tracer.Start(c.Request().Context(), spanAuth)
		client, err := s.authenticate(c, p)
		endSpan(span, err)
		if err != nil {
			return err
		}
		ri.tenant = client.Tenant

		body, err := readBody(c.Response(), c.Request(), s.MaxBodyBytes)
		if err != nil {
			return err
		}
		req, err := decodeRequest(body)
		if err != nil {
			return err
		}
		req.api, req.op, req.path = api, op, path
		ri.model, ri.stream = modelLabel(p, req.Model), req.Stream
		if s.Audit != nil {
			ri.promptHash = s.promptHash(req)
		}
		if err := authorize(client, req.Model, op); err != nil {
			return err
		}
		if err := checkBounds(req, client.Tier); err != nil {
			return err
		}
		var guard *guarded
		if client.Guardrails != nil {
			g := newGuarded(client.Guardrails, s.Classifier)
			guard = g
			defer func() {
				ri.flags = g.auditFlags()
				s.guardMetrics.count(g)
				if g.classifierErr != nil {
					s.Log.Warn("the guardrail classifier failed; the request passed (fail_open)", "request_id", ri.id, "err", g.classifierErr)
				}
			}()
			_, span := s.Tracer.Start(c.Request().Context(), spanGuardrails)
			err := g.guardInput(c.Request().Context(), req)
			endSpan(span, err)
			if err != nil {
				return err
			}
		}
		if req.Stream && api == apiOpenAI && op != policy.OpEmbeddings {
			if err := prepareStream(req); err != nil {
				return err
			}
		}
		x := &exchange{req: req, capture: s.Audit != nil, guard: guard} // the audit event has the answer's tokens
		if s.Guard != nil {
			_, span := s.Tracer.Start(c.Request().Context(), spanGuard)
			watch, err := s.Guard.Inspect(c.Request().Context(), GuardRequest{
				ClientID: client.ID, Tenant: client.Tenant, Model: req.Model, Operation: op,
				Messages: requestMessages(req),
			})
			endSpan(span, err)
			if err != nil {
				return err
			}
			x.watch = watch
		}
		defer func() { ri.tokensIn, ri.tokensOut = x.split() }()
		ticket, err := s.admit(c, client, x)
		if err != nil {
			return err
		}
		if ticket != nil {
			x.limited = ticket.Reserved() > 0
			x.capture = x.capture || x.limited
			defer func() { ticket.Finish(x.used(ticket.Reserved())) }()
		}
		routes, err := s.route(c, p, client, req)
		if err != nil {
			return err
		}
		return s.forwardWithFallback(c, p, client, routes, x)
	}
}

// route returns the candidates for req, in the order of preference (see
// healthyRoutes): the compliant deployments of its model, or of its fallback's.
func (s *server) route(c echo.Context, p *policycache.Policy, client *policycache.Client, req *request) ([]policycache.Route, error) {
	_, span := s.Tracer.Start(c.Request().Context(), spanRouting)
	routes, err := router.Candidates(p, client, req.Model)
	if err != nil {
		endSpan(span, err)
		return nil, err
	}
	routes = s.healthyRoutes(c, p, client, req, routes)
	if span.Recording() {
		ri := info(c)
		span.SetInt(tracing.Candidates, int64(len(routes)))
		span.SetString(tracing.Deployment, routes[0].Deployment.Name)
		span.SetString(tracing.Fallback, ri.fallback)
		span.SetString(tracing.FallbackReason, ri.fallbackReason)
	}
	span.End()
	return routes, nil
}

// authenticate verifies the bearer token, resolves its client in p, and refuses a
// client whose residency does not allow this worker's region, all before a byte of
// the body is read. At most MaxUnauthenticated requests are at this stage at once.
func (s *server) authenticate(c echo.Context, p *policycache.Policy) (*policycache.Client, error) {
	r := c.Request()
	authorization, err := credential(c)
	if err != nil {
		return nil, err
	}
	if s.unauthenticated != nil {
		select {
		case s.unauthenticated <- struct{}{}:
		default:
			c.Response().Header().Set("Retry-After", "1")
			return nil, apierr.New(apierr.Overloaded, "the gateway is authenticating too many requests at once; retry shortly")
		}
	}
	id, err := s.Verifier.Verify(r.Context(), authorization, p)
	if s.unauthenticated != nil {
		<-s.unauthenticated
	}
	if err != nil {
		return nil, err
	}
	ri := info(c)
	client, ok := p.Client(id.ClientID)
	ri.clientID = id.ClientID
	switch {
	case !ok:
		// The issuer vouches for the id, but it is not the policy's: recorded
		// bounded, as a model name is.
		ri.clientID = boundedLabel(id.ClientID)
		return nil, apierr.New(apierr.ClientUnknown, "this client is not registered with the gateway")
	case !client.Enabled:
		return nil, apierr.New(apierr.ClientDisabled, "this client is disabled")
	case !client.RegionAllowed(s.Region):
		// Refused at the door: its request is never processed here, and its audit
		// event would land in this region's stream, so there is none (see observe).
		ri.unaudited = true
		return nil, wrongRegion(client, s.Region)
	}
	return client, nil
}

// wrongRegion is the 421 of a client whose residency does not allow region: it names
// the endpoint of the client's residency, when the policy has one.
func wrongRegion(client *policycache.Client, region string) error {
	where := "call a data plane in a region your residency allows"
	if client.Endpoint != "" {
		where = "call " + client.Endpoint
	}
	return apierr.New(apierr.WrongRegion, "this client's residency %q does not allow requests through region %q; %s",
		client.Residency, region, where)
}

// credential is the request's Authorization header; on /v1/messages the token may
// come in x-api-key instead, as Anthropic's SDKs send it, but never in both.
func credential(c echo.Context) (string, error) {
	h := c.Request().Header
	authorization := h.Get(echo.HeaderAuthorization)
	if c.Path() != messagesRoute {
		return authorization, nil
	}
	key := h.Get("X-Api-Key")
	switch {
	case key != "" && authorization != "":
		return "", apierr.New(apierr.InvalidRequest, "send the token in one header: Authorization or x-api-key, not both")
	case key != "":
		return "Bearer " + key, nil
	}
	return authorization, nil
}

// authorize checks the model, then the operation, against the client's tier.
func authorize(client *policycache.Client, model, op string) error {
	if !client.Tier.AllowsModel(model) {
		e := apierr.New(apierr.ModelNotAllowed, "this client may not use the model %q", model)
		e.Param = "model"
		return e
	}
	if !client.Tier.AllowsOperation(op) {
		return apierr.New(apierr.OperationNotAllowed, "this client may not call the %s operation", op)
	}
	return nil
}

// unknownModel is how logs and audit events name a model the policy does not have:
// the client's string is not recorded verbatim.
const unknownModel = "(unknown)"

// maxLabelBytes bounds a client-chosen string that logs and audit events record.
const maxLabelBytes = 256

// boundedLabel is s cut to maxLabelBytes (at a rune boundary, marked with "…"),
// with invalid UTF-8 replaced.
func boundedLabel(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= maxLabelBytes {
		return s
	}
	cut := maxLabelBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// modelLabel is the model as logs and audit events record it: its name when the
// policy has it, else unknownModel.
func modelLabel(p *policycache.Policy, model string) string {
	if _, ok := p.Model(model); ok {
		return model
	}
	return unknownModel
}
