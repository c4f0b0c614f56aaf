package api

import (
	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/dataplane/internal/policycache"
	"github.com/portcullis-gw/portcullis/dataplane/internal/router"
	"github.com/portcullis-gw/portcullis/dataplane/internal/upstream"
	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// proxy handles one OpenAI-compatible operation (op) forwarded to path upstream.
func (s *server) proxy(op, path string) echo.HandlerFunc {
	return func(c echo.Context) error {
		ri := info(c)
		body, err := readBody(c.Response(), c.Request(), s.MaxBodyBytes)
		if err != nil {
			return err
		}
		req, err := decodeRequest(body)
		if err != nil {
			return err
		}
		ri.model, ri.operation, ri.stream = req.Model, op, req.Stream
		if s.Audit != nil {
			ri.promptHash = s.promptHash(req)
		}

		p := s.Policy.Current()
		if p == nil {
			return errPolicyNotReady
		}
		client, err := s.authenticate(c, p)
		if err != nil {
			return err
		}
		ri.tenant = client.Tenant
		if err := authorize(client, req.Model, op); err != nil {
			return err
		}
		m := &metering{}
		if req.Stream && op != policy.OpEmbeddings && path != upstream.PathMessages {
			if err := prepareStream(req, m); err != nil {
				return err
			}
		}
		defer func() { ri.tokensIn, ri.tokensOut = m.split() }()
		ticket, err := s.admit(c, client, op, req, m)
		if err != nil {
			return err
		}
		if ticket != nil {
			m.enabled = ticket.Reserved() > 0
			m.body.on = m.enabled && m.stream == nil
			defer func() { ticket.Finish(m.used(ticket.Reserved())) }()
		}
		if s.Audit != nil && m.stream == nil {
			m.body.on = true // for the audit event's token counts
		}
		routes, err := router.Candidates(p, client, req.Model)
		if err != nil {
			return err
		}
		routes = s.healthyRoutes(c, p, client, req.Model, op, path, routes)
		return s.forwardWithFallback(c, p, client, routes, op, path, req, m)
	}
}

// authenticate verifies the bearer token and resolves its client in p.
func (s *server) authenticate(c echo.Context, p *policycache.Policy) (*policycache.Client, error) {
	r := c.Request()
	authorization, err := credential(c)
	if err != nil {
		return nil, err
	}
	id, err := s.Verifier.Verify(r.Context(), authorization, p)
	if err != nil {
		return nil, err
	}
	info(c).clientID = id.ClientID
	client, ok := p.Client(id.ClientID)
	switch {
	case !ok:
		return nil, apierr.New(apierr.ClientUnknown, "this client is not registered with the gateway")
	case !client.Enabled:
		return nil, apierr.New(apierr.ClientDisabled, "this client is disabled")
	}
	return client, nil
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
