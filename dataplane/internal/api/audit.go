package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"math"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/audit"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// Auditor delivers audit events without losing them (the audit package's
// publisher).
type Auditor interface {
	// Publish records e; an error means it could not be kept.
	Publish(e audit.Event) error
	// Accepting returns an error when a new event could not be kept now (the spool
	// is full and the policy is to refuse requests): requests are then refused
	// rather than served unaudited.
	Accepting() error
}

// maxHeaderValue bounds an audited header value.
const maxHeaderValue = 256

// audited reports whether requests on route get an audit event: the API's own
// routes, not health checks or unmatched paths (/metrics among them).
func audited(route string) bool {
	switch route {
	case "/healthz", "/readyz", routeUnmatched:
		return false
	}
	return true
}

// auditAccepting refuses a request with 503 audit_unavailable when its audit event
// could not be kept.
func (s *server) auditAccepting() error {
	if s.Audit == nil {
		return nil
	}
	if err := s.Audit.Accepting(); err != nil {
		return apierr.Wrap(apierr.AuditUnavailable, err, "the gateway cannot record requests right now; retry later")
	}
	return nil
}

// hashWriter passes a response through while hashing its body.
type hashWriter struct {
	http.ResponseWriter
	h hash.Hash
	n int64
}

func (w *hashWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	return n, err
}

// Flush and Unwrap keep streaming and deadlines working through the wrapper.
func (w *hashWriter) Flush() { _ = http.NewResponseController(w.ResponseWriter).Flush() }

func (w *hashWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// hashResponse makes the response's body be hashed as it is written, when requests
// are audited; nil otherwise.
func (s *server) hashResponse(c echo.Context) *hashWriter {
	if s.Audit == nil {
		return nil
	}
	w := &hashWriter{ResponseWriter: c.Response().Writer, h: hmac.New(sha256.New, s.AuditKey)}
	c.Response().Writer = w
	return w
}

// promptMembers are the request members that make up its prompt, in the order they
// are hashed: a system prompt, then the conversation, completion prompt or
// embedding input.
var promptMembers = []string{"system", "messages", "prompt", "input"}

// promptHash is the keyed hash of the request's prompt: its prompt members' JSON as
// the client sent them, joined by newlines.
func (s *server) promptHash(req *request) string {
	var b []byte
	for _, name := range promptMembers {
		if raw, ok := req.fields[name]; ok {
			if len(b) > 0 {
				b = append(b, '\n')
			}
			b = append(b, raw...)
		}
	}
	if len(b) == 0 {
		return ""
	}
	return audit.Hash(s.AuditKey, b)
}

// audit publishes the request's audit event. An event that cannot be kept is logged
// and counted by the publisher; the answer has already gone.
func (s *server) audit(c echo.Context, ri *requestInfo, start time.Time, elapsed time.Duration, respHash *hashWriter) {
	req := c.Request()
	e := audit.Event{
		TS: start.UTC(), RequestID: ri.id, ClientRequestID: ri.clientRequestID, Region: s.Region, Worker: s.Worker,
		ClientID: ri.clientID, TenantID: ri.tenant, Operation: ri.operation, Model: ri.model,
		Provider: ri.provider, Deployment: ri.deployment, KeyVersion: ri.keyVersion,
		PromptHash: ri.promptHash, TokensIn: ri.tokensIn, TokensOut: ri.tokensOut,
		LatencyMS: elapsed.Milliseconds(), UpstreamLatencyMS: ri.upstreamLatency.Milliseconds(),
		Status: c.Response().Status, Stream: ri.stream,
		Fallback: ri.fallback != "", FallbackModel: ri.fallback, FallbackReason: ri.fallbackReason,
		SourceNet: sourceNet(s.TrustedProxies.ClientAddr(req)), Headers: s.auditHeaders(req.Header),
		Flagged: len(ri.flags) > 0, Flags: ri.flags,
	}
	if ri.errCode != "" {
		code := ri.errCode
		e.ErrorCode = &code
	}
	if respHash != nil && respHash.n > 0 {
		e.ResponseHash = audit.HashPrefix + hex.EncodeToString(respHash.h.Sum(nil))
	}
	e.CostUSDMicros = int64(math.Round(float64(e.TokensIn)*ri.route.InputUSDPer1M + float64(e.TokensOut)*ri.route.OutputUSDPer1M))
	if err := s.Audit.Publish(e); err != nil {
		s.Log.Error("audit event not kept", "request_id", ri.id, "err", err)
	}
}

// auditHeaders are the allowlisted request headers, lower-cased and bounded: the
// policy's allowlist, else the data plane's own, else audit.DefaultHeaders.
func (s *server) auditHeaders(h http.Header) map[string]string {
	names := s.AuditHeaders
	if p := s.Policy.Current(); p != nil && p.AuditHeaders != nil {
		names = p.AuditHeaders
	}
	if names == nil {
		names = audit.DefaultHeaders
	}
	out := make(map[string]string, len(names))
	for _, name := range names {
		if slices.Contains(policy.CredentialHeaders, strings.ToLower(name)) {
			continue // credentials are never recorded, whatever the allowlist says
		}
		if v := h.Get(name); v != "" {
			if len(v) > maxHeaderValue {
				v = v[:maxHeaderValue]
			}
			out[strings.ToLower(name)] = v
		}
	}
	return out
}

// sourceNet is the network of a (see audit.SourceNet), "" for an invalid one.
func sourceNet(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return audit.SourceNet(a.String())
}
