package anthropic

import (
	"strings"
	"testing"
)

func TestErrorToOpenAI(t *testing.T) {
	tests := []struct {
		name        string
		status      int
		body        string
		wantCode    string
		wantMessage string
	}{
		{"invalid request keeps the message", 400, `{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: too big"}}`, "invalid_request", "max_tokens: too big"},
		{"gateway key refused", 401, `{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}`, "upstream_error", "the upstream failed to answer"},
		{"permission", 403, `{"type":"error","error":{"type":"permission_error","message":"no"}}`, "upstream_error", "the upstream failed to answer"},
		{"not found", 404, `{"type":"error","error":{"type":"not_found_error","message":"model: x"}}`, "not_found", "model: x"},
		{"too large", 413, `{"type":"error","error":{"type":"request_too_large","message":"Request exceeds the maximum size"}}`, "body_too_large", "Request exceeds the maximum size"},
		{"rate limited", 429, `{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}`, "rate_limit_exceeded", "the upstream is rate limiting requests; retry later"},
		{"api error", 500, `{"type":"error","error":{"type":"api_error","message":"Internal server error"}}`, "upstream_error", "the upstream failed to answer"},
		{"overloaded", 529, `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`, "upstream_unavailable", "the upstream is overloaded; retry later"},
		{"timeout", 504, `{"type":"error","error":{"type":"timeout_error","message":"t"}}`, "upstream_timeout", "the upstream timed out"},
		{"the type wins over the status", 500, `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`, "upstream_unavailable", "the upstream is overloaded; retry later"},
		{"no body, 400", 400, ``, "invalid_request", "the upstream rejected the request"},
		{"html body, 503", 503, `<html>bad gateway</html>`, "upstream_unavailable", "the upstream is overloaded; retry later"},
		{"other 4xx", 422, `{"type":"error","error":{"type":"weird","message":"m"}}`, "invalid_request", "m"},
		{"other 5xx", 502, `{}`, "upstream_error", "the upstream failed to answer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, msg := ErrorToOpenAI(tc.status, []byte(tc.body))
			if code != tc.wantCode || msg != tc.wantMessage {
				t.Errorf("ErrorToOpenAI = %q, %q; want %q, %q", code, msg, tc.wantCode, tc.wantMessage)
			}
		})
	}
}

func TestErrorToOpenAIClipsLongMessages(t *testing.T) {
	long := strings.Repeat("é", 2000)
	_, msg := ErrorToOpenAI(400, []byte(`{"type":"error","error":{"type":"invalid_request_error","message":"`+long+`"}}`))
	if len(msg) > maxErrorMessage+3 || !strings.HasSuffix(msg, "...") || strings.ContainsRune(msg, '\uFFFD') {
		t.Errorf("message of %d bytes not clipped cleanly: %q...", len(msg), msg[:20])
	}
}

func TestErrorEvent(t *testing.T) {
	got := string(ErrorEvent(529, "the upstream is overloaded"))
	want := "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"the upstream is overloaded\"}}\n\n"
	if got != want {
		t.Errorf("ErrorEvent = %q, want %q", got, want)
	}
}
