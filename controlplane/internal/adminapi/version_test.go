package adminapi_test

import (
	"context"
	"net/http"
	"slices"
	"testing"

	"github.com/portcullis-gw/portcullis/shared/policy"
)

func TestEveryMutationBumpsTheVersionOnceAndCallsOnChange(t *testing.T) {
	h := newHarness(t)
	h.fixture()
	ctx := context.Background()

	tests := []struct {
		name, method, path, body string
		headers                  []string
		status                   int
		check                    func(*policy.Snapshot) bool
	}{
		{"create client", http.MethodPost, "/admin/v1/clients", `{"client_id":"app","tenant":"acme","tier":"default","residency":"global"}`, nil, http.StatusCreated,
			func(s *policy.Snapshot) bool {
				return slices.Contains(s.Clients, policy.Client{ClientID: "app", Tenant: "acme", Tier: "default", Enabled: true})
			}},
		{"disable client", http.MethodPatch, "/admin/v1/clients/app", `{"enabled":false}`, []string{"If-Match", `"1"`}, http.StatusOK,
			func(s *policy.Snapshot) bool {
				return slices.Contains(s.Clients, policy.Client{ClientID: "app", Tenant: "acme", Tier: "default", Enabled: false})
			}},
		{"replace tier", http.MethodPut, "/admin/v1/tiers/default",
			`{"requests_per_minute":61,"tokens_per_hour":100000,"max_concurrent_requests":5}`, []string{"If-Match", `"1"`}, http.StatusOK,
			func(s *policy.Snapshot) bool { return len(s.Tiers) == 1 && s.Tiers[0].RequestsPerMinute == 61 }},
		{"revoke token", http.MethodPost, "/admin/v1/revoked-tokens", `{"jti":"j1","expires_at":"2999-01-01T00:00:00Z"}`, nil, http.StatusCreated,
			func(s *policy.Snapshot) bool { return len(s.RevokedTokens) == 1 }},
		{"delete client", http.MethodDelete, "/admin/v1/clients/app", "", nil, http.StatusNoContent,
			func(s *policy.Snapshot) bool { return len(s.Clients) == 0 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, calls := h.version(), h.changes.Load()
			h.must(tc.status, tc.method, tc.path, tc.body, tc.headers...)
			if got := h.changes.Load(); got != calls+1 {
				t.Errorf("onChange called %d times, want 1", got-calls)
			}
			snap, err := h.st.Snapshot(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if snap.Version != before+1 {
				t.Errorf("version went from %d to %d, want +1", before, snap.Version)
			}
			if !tc.check(snap) {
				t.Errorf("snapshot does not reflect the change")
			}
		})
	}
}
