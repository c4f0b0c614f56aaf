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

// errNoKey is OpenAI's 401 for a request without a Bearer key.
func errNoKey() error {
	return &apiError{
		Status: http.StatusUnauthorized,
		Message: "You didn't provide an API key. You need to provide your API key in an Authorization header " +
			"using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
		Type: "invalid_request_error",
		Code: strp("invalid_api_key"),
	}
}

// errBadKey is OpenAI's 401 for a key it does not accept. Like OpenAI's, it shows the
// key masked (see maskKey), never whole.
func errBadKey(key string) error {
	return &apiError{
		Status: http.StatusUnauthorized,
		Message: "Incorrect API key provided: " + maskKey(key) +
			". You can find your API key at https://platform.openai.com/account/api-keys.",
		Type: "invalid_request_error",
		Code: strp("invalid_api_key"),
	}
}

// errNoAccount is the admin API's 404 for a service account it does not know.
func errNoAccount(id string) error {
	return &apiError{
		Status:  http.StatusNotFound,
		Message: fmt.Sprintf("No service account found with id '%s' in this project.", id),
		Type:    "invalid_request_error",
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
