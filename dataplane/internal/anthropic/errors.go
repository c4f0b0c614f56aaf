package anthropic

import (
	"encoding/json"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/portcullis-gw/portcullis/shared/apierr"
)

// maxErrorMessage bounds an upstream error message passed on to a client.
const maxErrorMessage = 1000

// Anthropic's error types.
const (
	TypeInvalidRequest  = "invalid_request_error"
	TypeAuthentication  = "authentication_error"
	TypeBilling         = "billing_error"
	TypePermission      = "permission_error"
	TypeNotFound        = "not_found_error"
	TypeRequestTooLarge = "request_too_large"
	TypeRateLimit       = "rate_limit_error"
	TypeTimeout         = "timeout_error"
	TypeAPI             = "api_error"
	TypeOverloaded      = "overloaded_error"
)

// errorBody is Anthropic's error schema: {"type":"error","error":{"type","message"}}.
type errorBody struct {
	Type  string     `json:"type"`
	Error errorInner `json:"error"`
}

type errorInner struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// statusOfType is the HTTP status Anthropic answers each error type with.
var statusOfType = map[string]int{
	TypeInvalidRequest:  http.StatusBadRequest,
	TypeAuthentication:  http.StatusUnauthorized,
	TypeBilling:         http.StatusPaymentRequired,
	TypePermission:      http.StatusForbidden,
	TypeNotFound:        http.StatusNotFound,
	TypeRequestTooLarge: http.StatusRequestEntityTooLarge,
	TypeRateLimit:       http.StatusTooManyRequests,
	TypeTimeout:         http.StatusGatewayTimeout,
	TypeAPI:             http.StatusInternalServerError,
	TypeOverloaded:      529,
}

// ErrorToOpenAI maps an Anthropic error answer (its HTTP status and body) to a code
// of the shared/apierr registry and a message for the client. The error type in
// the body decides when there is one, else the status. Only a client's own mistakes
// (400, 404, 413) keep the upstream's message; an upstream refusing the gateway's
// key, failing or being overloaded gets a generic one.
func ErrorToOpenAI(status int, body []byte) (code, message string) {
	var eb errorBody
	_ = json.Unmarshal(body, &eb) // a body that is not an Anthropic error leaves the status to decide
	return mapError(status, eb.Error.Type, eb.Error.Message)
}

// mapError is ErrorToOpenAI for an error of Anthropic type typ (maybe empty) and
// message, answered with status.
func mapError(status int, typ, message string) (code, clientMessage string) {
	if s, ok := statusOfType[typ]; ok {
		status = s
	}
	upstream := clip(message)
	keep := func(code apierr.Code, fallback string) (string, string) {
		if upstream == "" {
			return string(code), fallback
		}
		return string(code), upstream
	}
	switch {
	case status == http.StatusBadRequest:
		return keep(apierr.InvalidRequest, "the upstream rejected the request")
	case status == http.StatusNotFound:
		return keep(apierr.NotFound, "the upstream did not find the requested resource")
	case status == http.StatusRequestEntityTooLarge:
		return keep(apierr.BodyTooLarge, "the request is too large for the upstream")
	case status == http.StatusTooManyRequests:
		return string(apierr.RateLimited), "the upstream is rate limiting requests; retry later"
	case status == http.StatusGatewayTimeout:
		return string(apierr.UpstreamTimeout), "the upstream timed out"
	case status == 529 || status == http.StatusServiceUnavailable:
		return string(apierr.UpstreamUnavailable), "the upstream is overloaded; retry later"
	case status == http.StatusUnauthorized || status == http.StatusForbidden || status == http.StatusPaymentRequired:
		return string(apierr.UpstreamError), "the upstream failed to answer"
	case status >= 400 && status < 500:
		return keep(apierr.InvalidRequest, "the upstream rejected the request")
	default:
		return string(apierr.UpstreamError), "the upstream failed to answer"
	}
}

// clip bounds an upstream message and keeps it valid UTF-8.
func clip(s string) string {
	if len(s) > maxErrorMessage {
		s = s[:maxErrorMessage]
		for len(s) > 0 && !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
		s += "..."
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// ErrorType maps an HTTP status to Anthropic's error type for it.
func ErrorType(status int) string {
	switch status {
	case http.StatusBadRequest:
		return TypeInvalidRequest
	case http.StatusUnauthorized:
		return TypeAuthentication
	case http.StatusPaymentRequired:
		return TypeBilling
	case http.StatusForbidden:
		return TypePermission
	case http.StatusNotFound:
		return TypeNotFound
	case http.StatusRequestEntityTooLarge:
		return TypeRequestTooLarge
	case http.StatusTooManyRequests:
		return TypeRateLimit
	case http.StatusGatewayTimeout:
		return TypeTimeout
	case 529, http.StatusServiceUnavailable:
		return TypeOverloaded
	}
	if status >= 400 && status < 500 {
		return TypeInvalidRequest
	}
	return TypeAPI
}

// ErrorBody renders an error with HTTP status and a client-safe message in
// Anthropic's schema: {"type":"error","error":{"type":"...","message":"..."}}.
func ErrorBody(status int, message string) []byte {
	b, err := json.Marshal(errorBody{Type: "error", Error: errorInner{Type: ErrorType(status), Message: message}})
	if err != nil { // a struct of strings always encodes
		return []byte(`{"type":"error","error":{"type":"api_error","message":"internal error"}}`)
	}
	return b
}

// ErrorEvent renders an error as the server-sent event that ends a broken Anthropic
// stream: "event: error" with ErrorBody as its data.
func ErrorEvent(status int, message string) []byte {
	body := ErrorBody(status, message)
	out := make([]byte, 0, len(body)+22)
	out = append(out, "event: error\ndata: "...)
	out = append(out, body...)
	return append(out, "\n\n"...)
}
