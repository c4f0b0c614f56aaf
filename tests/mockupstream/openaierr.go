package mockupstream

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// apiError is an error rendered in OpenAI's schema:
// {"error":{"message","type","param","code"}}.
type apiError struct {
	Status  int     `json:"-"`
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s", e.Status, e.Message) }

func strp(s string) *string { return &s }

func errInvalid(param, msg string) error {
	var p *string
	if param != "" {
		p = strp(param)
	}
	return &apiError{Status: http.StatusBadRequest, Message: msg, Type: "invalid_request_error", Param: p}
}

func errBadJSON(err error) error {
	return &apiError{
		Status:  http.StatusBadRequest,
		Message: "We could not parse the JSON body of your request: " + err.Error(),
		Type:    "invalid_request_error",
	}
}

func errTooLarge(err error) error {
	return &apiError{Status: http.StatusRequestEntityTooLarge, Message: "request body: " + err.Error(), Type: "invalid_request_error"}
}

func errNotFound(r *http.Request) error {
	return &apiError{
		Status:  http.StatusNotFound,
		Message: fmt.Sprintf("Invalid URL (%s %s)", r.Method, r.URL.Path),
		Type:    "invalid_request_error",
	}
}

func errMethod(r *http.Request) error {
	return &apiError{
		Status:  http.StatusMethodNotAllowed,
		Message: fmt.Sprintf("Method %s not allowed on %s", r.Method, r.URL.Path),
		Type:    "invalid_request_error",
	}
}

func errBadKey() error {
	return &apiError{
		Status:  http.StatusUnauthorized,
		Message: "Incorrect API key provided.",
		Type:    "invalid_request_error",
		Code:    strp("invalid_api_key"),
	}
}

func errServer() error {
	return &apiError{
		Status:  http.StatusInternalServerError,
		Message: "The server had an error while processing your request.",
		Type:    "server_error",
	}
}

func errRateLimited() error {
	return &apiError{
		Status:  http.StatusTooManyRequests,
		Message: "Rate limit reached (injected by the mock upstream).",
		Type:    "requests",
		Code:    strp("rate_limit_exceeded"),
	}
}

// writeError renders err; errDropped means there is nothing left to write.
func writeError(w http.ResponseWriter, err error) {
	if errors.Is(err, errDropped) {
		return
	}
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = &apiError{Status: http.StatusInternalServerError, Message: err.Error(), Type: "server_error"}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(ae.Status)
	_ = json.NewEncoder(w).Encode(struct {
		Error *apiError `json:"error"`
	}{ae})
}
