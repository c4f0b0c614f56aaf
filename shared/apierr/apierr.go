// Package apierr is the one registry of error codes that Portcullis returns to API
// clients, with the HTTP status and error type each code carries. Handlers return an
// *Error; one wrapper per server turns it into the right wire schema (OpenAI on /v1,
// JSON problem objects on /admin/v1) and logs the internal cause, which never reaches
// the client.
package apierr

import (
	"errors"
	"fmt"
	"net/http"
)

// Code is a stable, machine-readable error code.
type Code string

// Error type strings, as used in OpenAI's error schema.
const (
	TypeInvalidRequest = "invalid_request_error"
	TypeAuthentication = "authentication_error"
	TypePermission     = "permission_error"
	TypeNotFound       = "not_found_error"
	TypeRateLimit      = "rate_limit_error"
	TypeServer         = "server_error"
	TypeUnavailable    = "service_unavailable"
)

// Data-plane codes.
const (
	InvalidRequest      Code = "invalid_request"
	InvalidJSON         Code = "invalid_json"
	BodyTooLarge        Code = "body_too_large"
	InvalidToken        Code = "invalid_token"
	ClientUnknown       Code = "client_unknown"
	ClientDisabled      Code = "client_disabled"
	ModelNotAllowed     Code = "model_not_allowed"
	OperationNotAllowed Code = "operation_not_allowed"
	ModelNotFound       Code = "model_not_found"
	NotFound            Code = "not_found"
	MethodNotAllowed    Code = "method_not_allowed"
	RateLimited         Code = "rate_limit_exceeded"
	NoCompliantUpstream Code = "no_compliant_upstream"
	UpstreamUnavailable Code = "upstream_unavailable"
	UpstreamError       Code = "upstream_error"
	UpstreamTimeout     Code = "upstream_timeout"
	UpstreamTLS         Code = "upstream_tls_error"
	UpstreamKey         Code = "upstream_key_unavailable"
	LimitsUnavailable   Code = "limits_unavailable"
	AuditUnavailable    Code = "audit_unavailable" // the audit spool is full: no request is served unaudited
	PolicyNotReady      Code = "policy_not_ready"
	// PolicyTooOld: the worker has not confirmed its policy is current for longer
	// than PORTCULLIS_POLICY_MAX_AGE (/readyz only; requests are still served).
	PolicyTooOld Code = "policy_too_old"
	// Overloaded: the worker has as many requests still being authenticated as it
	// allows (PORTCULLIS_MAX_UNAUTHENTICATED); retry after Retry-After.
	Overloaded Code = "overloaded"
	// WrongRegion: the client's residency does not allow this worker's region; the
	// message names the endpoint to call instead.
	WrongRegion Code = "wrong_region"
	// ContentBlocked: a guardrail blocked the request or the answer; the message
	// names the family, never the content.
	ContentBlocked Code = "content_blocked"
	// GuardrailUnavailable: a guardrail the client's policy requires (a fail_closed
	// classifier) could not check the request.
	GuardrailUnavailable Code = "guardrail_unavailable"
	Internal             Code = "internal_error"
)

// Admin-API codes.
const (
	Unauthorized Code = "unauthorized"
	// Forbidden: the caller is authenticated but its roles lack the permission the
	// request needs; the message names it.
	Forbidden Code = "forbidden"
	// CSRFFailed: a state-changing request with a console session's cookie lacks the
	// session's X-CSRF-Token.
	CSRFFailed           Code = "csrf_failed"
	ValidationFailed     Code = "validation_failed"
	Conflict             Code = "conflict"
	PreconditionFailed   Code = "precondition_failed"
	PreconditionRequired Code = "precondition_required"
	UnsupportedMedia     Code = "unsupported_media_type"

	// Key custody (admin API).
	VaultUnavailable   Code = "vault_unavailable"    // no Vault configured, or it failed to answer
	NoNewKeyVersion    Code = "no_new_key_version"   // rotation found no newer version to rotate to
	ProviderAdminError Code = "provider_admin_error" // a provider's admin API refused to mint or delete a key
)

// Def is what the registry knows about a code.
type Def struct {
	Status int
	Type   string
}

var registry = map[Code]Def{
	InvalidRequest:       {http.StatusBadRequest, TypeInvalidRequest},
	InvalidJSON:          {http.StatusBadRequest, TypeInvalidRequest},
	BodyTooLarge:         {http.StatusRequestEntityTooLarge, TypeInvalidRequest},
	InvalidToken:         {http.StatusUnauthorized, TypeAuthentication},
	ClientUnknown:        {http.StatusForbidden, TypePermission},
	ClientDisabled:       {http.StatusForbidden, TypePermission},
	ModelNotAllowed:      {http.StatusForbidden, TypePermission},
	OperationNotAllowed:  {http.StatusForbidden, TypePermission},
	ModelNotFound:        {http.StatusNotFound, TypeInvalidRequest},
	NotFound:             {http.StatusNotFound, TypeInvalidRequest},
	MethodNotAllowed:     {http.StatusMethodNotAllowed, TypeInvalidRequest},
	RateLimited:          {http.StatusTooManyRequests, TypeRateLimit},
	NoCompliantUpstream:  {http.StatusServiceUnavailable, TypeUnavailable},
	AuditUnavailable:     {http.StatusServiceUnavailable, TypeUnavailable},
	UpstreamUnavailable:  {http.StatusServiceUnavailable, TypeUnavailable},
	UpstreamError:        {http.StatusBadGateway, TypeServer},
	UpstreamTimeout:      {http.StatusGatewayTimeout, TypeServer},
	UpstreamTLS:          {http.StatusBadGateway, TypeServer},
	UpstreamKey:          {http.StatusServiceUnavailable, TypeUnavailable},
	LimitsUnavailable:    {http.StatusServiceUnavailable, TypeUnavailable},
	PolicyNotReady:       {http.StatusServiceUnavailable, TypeUnavailable},
	PolicyTooOld:         {http.StatusServiceUnavailable, TypeUnavailable},
	Overloaded:           {http.StatusServiceUnavailable, TypeUnavailable},
	WrongRegion:          {http.StatusMisdirectedRequest, TypePermission},
	ContentBlocked:       {http.StatusBadRequest, TypeInvalidRequest},
	GuardrailUnavailable: {http.StatusServiceUnavailable, TypeUnavailable},
	Internal:             {http.StatusInternalServerError, TypeServer},
	Unauthorized:         {http.StatusUnauthorized, TypeAuthentication},
	Forbidden:            {http.StatusForbidden, TypePermission},
	CSRFFailed:           {http.StatusForbidden, TypePermission},
	ValidationFailed:     {http.StatusUnprocessableEntity, TypeInvalidRequest},
	Conflict:             {http.StatusConflict, TypeInvalidRequest},
	PreconditionFailed:   {http.StatusPreconditionFailed, TypeInvalidRequest},
	PreconditionRequired: {http.StatusPreconditionRequired, TypeInvalidRequest},
	UnsupportedMedia:     {http.StatusUnsupportedMediaType, TypeInvalidRequest},
	VaultUnavailable:     {http.StatusServiceUnavailable, TypeUnavailable},
	NoNewKeyVersion:      {http.StatusConflict, TypeInvalidRequest},
	ProviderAdminError:   {http.StatusBadGateway, TypeServer},
}

// Lookup returns the registry entry of c. An unregistered code reads as Internal.
func Lookup(c Code) Def {
	if d, ok := registry[c]; ok {
		return d
	}
	return registry[Internal]
}

// Codes returns every registered code.
func Codes() []Code {
	out := make([]Code, 0, len(registry))
	for c := range registry {
		out = append(out, c)
	}
	return out
}

// FieldError is one per-field validation problem.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error is an error with a public face: a registered code and a message that is safe
// to show the client. Cause is internal and only ever logged.
type Error struct {
	Code    Code
	Message string
	Param   string // optional: the request field at fault
	// ErrType, when set, replaces the code's registered type in the OpenAI schema:
	// OpenAI's 429s say which limit was hit ("requests", "tokens").
	ErrType string
	Fields  []FieldError // optional: per-field validation problems
	// Permission, with Forbidden, is the permission the caller lacks.
	Permission string
	Cause      error
}

// New returns an *Error with a client-safe message.
func New(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an *Error whose internal cause is err.
func Wrap(code Code, err error, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Cause: err}
}

// Status is the HTTP status of e's code.
func (e *Error) Status() int { return Lookup(e.Code).Status }

// Type is e's error type: ErrType if set, else its code's registered type.
func (e *Error) Type() string {
	if e.ErrType != "" {
		return e.ErrType
	}
	return Lookup(e.Code).Type
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Cause)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Cause }

// From returns the *Error in err's chain, or an Internal error wrapping err.
func From(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: Internal, Message: "internal error", Cause: err}
}

// OpenAIBody is the OpenAI error schema: {"error":{"message","type","param","code"}}.
type OpenAIBody struct {
	Error OpenAIError `json:"error"`
}

// OpenAIError is the inner object of OpenAIBody.
type OpenAIError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    Code    `json:"code"`
}

// OpenAI renders e in OpenAI's error schema.
func (e *Error) OpenAI() OpenAIBody {
	var param *string
	if e.Param != "" {
		p := e.Param
		param = &p
	}
	return OpenAIBody{Error: OpenAIError{Message: e.Message, Type: e.Type(), Param: param, Code: e.Code}}
}

// AdminBody is the admin API's error schema.
type AdminBody struct {
	Error AdminError `json:"error"`
}

// AdminError is the inner object of AdminBody.
type AdminError struct {
	Code    Code         `json:"code"`
	Message string       `json:"message"`
	Fields  []FieldError `json:"fields,omitempty"`
	// Permission names the permission a forbidden request needs.
	Permission string `json:"permission,omitempty"`
}

// Admin renders e in the admin API's error schema.
func (e *Error) Admin() AdminBody {
	return AdminBody{Error: AdminError{Code: e.Code, Message: e.Message, Fields: e.Fields, Permission: e.Permission}}
}
