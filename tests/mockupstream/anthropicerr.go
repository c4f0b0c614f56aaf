package mockupstream

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// StatusOverloaded is Anthropic's non-standard "overloaded" status, which Fail529 answers.
const StatusOverloaded = 529

// anthropicError is an error rendered in Anthropic's schema:
// {"type":"error","error":{"type","message"}}.
type anthropicError struct {
	Status  int    `json:"-"`
	Type    string `json:"type"`
	Message string `json:"message"`
}

func (e *anthropicError) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Type, e.Message) }

func errAnthropicInvalid(msg string) error {
	return &anthropicError{Status: http.StatusBadRequest, Type: "invalid_request_error", Message: msg}
}

func errAnthropicAuth(msg string) error {
	return &anthropicError{Status: http.StatusUnauthorized, Type: "authentication_error", Message: msg}
}

// anthropicTypes maps the statuses the mock answers to Anthropic's error types.
var anthropicTypes = map[int]string{
	http.StatusBadRequest:            "invalid_request_error",
	http.StatusUnauthorized:          "authentication_error",
	http.StatusForbidden:             "permission_error",
	http.StatusNotFound:              "not_found_error",
	http.StatusMethodNotAllowed:      "invalid_request_error",
	http.StatusRequestEntityTooLarge: "request_too_large",
	http.StatusTooManyRequests:       "rate_limit_error",
	http.StatusInternalServerError:   "api_error",
	StatusOverloaded:                 "overloaded_error",
}

// asAnthropic returns err as an Anthropic error. The errors shared with the OpenAI
// endpoints (bad JSON, body too large, wrong method) keep their status and message and
// get the Anthropic type for their status.
func asAnthropic(err error) *anthropicError {
	var ae *anthropicError
	if errors.As(err, &ae) {
		return ae
	}
	var oe *apiError
	if errors.As(err, &oe) {
		typ, ok := anthropicTypes[oe.Status]
		if !ok {
			typ = "api_error"
		}
		return &anthropicError{Status: oe.Status, Type: typ, Message: oe.Message}
	}
	return &anthropicError{Status: http.StatusInternalServerError, Type: "api_error", Message: err.Error()}
}

// writeAnthropicError renders err in Anthropic's schema; errDropped means there is
// nothing left to write.
func writeAnthropicError(w http.ResponseWriter, err error) {
	if errors.Is(err, errDropped) {
		return
	}
	ae := asAnthropic(err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(ae.Status)
	_ = json.NewEncoder(w).Encode(struct {
		Type  string          `json:"type"`
		Error *anthropicError `json:"error"`
	}{"error", ae})
}
