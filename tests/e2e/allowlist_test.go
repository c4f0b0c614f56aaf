package e2e

import (
	"encoding/json"
	"net/http"
	"testing"
)

// TestSeedAnalyticsTierAllowlists checks the seed's service_account_analytics tier:
// completion (all text generation, chat included) on gpt-4o-mini only.
func TestSeedAnalyticsTierAllowlists(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	s.seed(t)
	s.waitReady(t)
	token := s.mint(t, "analytics-svc")

	tests := []struct {
		name     string
		path     string
		body     map[string]any
		status   int
		wantCode string
	}{
		{"completion on its model", "/v1/completions", map[string]any{"model": "gpt-4o-mini", "prompt": "hi"}, http.StatusOK, ""},
		{"embeddings refused", "/v1/embeddings", map[string]any{"model": "gpt-4o-mini", "input": "hi"}, http.StatusForbidden, "operation_not_allowed"},
		{"chat on its model", "/v1/chat/completions", chatBody("gpt-4o-mini"), http.StatusOK, ""},
		{"gpt-4o refused", "/v1/completions", map[string]any{"model": "gpt-4o", "prompt": "hi"}, http.StatusForbidden, "model_not_allowed"},
		{"gpt-4o chat refused on model first", "/v1/chat/completions", chatBody("gpt-4o"), http.StatusForbidden, "model_not_allowed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := s.call(t, "eu", token, "POST", tc.path, tc.body)
			if r.Status != tc.status || r.code() != tc.wantCode {
				t.Fatalf("status %d code %q, want %d %q: %s", r.Status, r.code(), tc.status, tc.wantCode, r.Body)
			}
		})
	}

	// /v1/models lists only what the client may use.
	r := s.call(t, "eu", token, "GET", "/v1/models", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET /v1/models: %d %s", r.Status, r.Body)
	}
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(r.Body, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Data) != 1 || list.Data[0].ID != "gpt-4o-mini" {
		t.Fatalf("models listed for analytics-svc: %+v", list.Data)
	}
}
