package adminapi_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/portcullis-gw/portcullis/shared/policy"
)

// storedResidency is the residency of clientID in the policy snapshot: "" for none.
func (h *harness) storedResidency(clientID string) string {
	h.t.Helper()
	snap, err := h.st.Snapshot(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	for _, c := range snap.Clients {
		if c.ClientID == clientID {
			return c.Residency
		}
	}
	h.t.Fatalf("client %s is not in the snapshot", clientID)
	return ""
}

// TestClientResidencyIsAChoiceNeverADefault: creating or replacing a client needs a
// residency, a rule's name or "global"; "global" is stored as no restriction and every
// client without one, old rows included, is shown as "global".
func TestClientResidencyIsAChoiceNeverADefault(t *testing.T) {
	h := newHarness(t)
	h.fixture()

	r := h.do(http.MethodPost, "/admin/v1/clients", `{"client_id":"app","tenant":"acme","tier":"default"}`)
	if r.status != http.StatusUnprocessableEntity || !strings.Contains(string(r.body), `"field":"residency"`) ||
		!strings.Contains(string(r.body), `name a residency rule, or \"global\"`) {
		t.Fatalf("create without residency: %d %s", r.status, r.body)
	}

	created := h.must(http.StatusCreated, http.MethodPost, "/admin/v1/clients",
		`{"client_id":"anywhere","tenant":"acme","tier":"default","residency":"global"}`).json(t)
	matches(t, "create global", created, map[string]any{"residency": "global"})
	if got := h.storedResidency("anywhere"); got != "" {
		t.Errorf(`"global" is stored as residency %q, want "" (no restriction)`, got)
	}

	// A client stored without residency before residency was required.
	if _, err := h.st.Clients().Create(context.Background(), policy.Client{ClientID: "old", Tenant: "acme", Tier: "default", Enabled: true}); err != nil {
		t.Fatal(err)
	}
	matches(t, "get old", h.must(http.StatusOK, http.MethodGet, "/admin/v1/clients/old", "").json(t), map[string]any{"residency": "global"})
	for _, it := range h.must(http.StatusOK, http.MethodGet, "/admin/v1/clients", "").json(t)["items"].([]any) {
		if got := it.(map[string]any)["residency"]; got != "global" {
			t.Errorf("list shows %v with residency %v, want global", it.(map[string]any)["client_id"], got)
		}
	}

	// PATCH may leave residency out; it keeps the client's.
	patched := h.must(http.StatusOK, http.MethodPatch, "/admin/v1/clients/old", `{"enabled":false}`, "If-Match", `"1"`).json(t)
	matches(t, "patch without residency", patched, map[string]any{"residency": "global", "enabled": false})
	if got := h.storedResidency("old"); got != "" {
		t.Errorf("after a patch without residency the client has residency %q", got)
	}
	matches(t, "patch to eu", h.must(http.StatusOK, http.MethodPatch, "/admin/v1/clients/old", `{"residency":"eu"}`, "If-Match", `"2"`).json(t),
		map[string]any{"residency": "eu"})
	if got := h.storedResidency("old"); got != "eu" {
		t.Errorf("after a patch to eu the client has residency %q", got)
	}
	matches(t, "patch to global", h.must(http.StatusOK, http.MethodPatch, "/admin/v1/clients/old", `{"residency":"global"}`, "If-Match", `"3"`).json(t),
		map[string]any{"residency": "global"})
	if got := h.storedResidency("old"); got != "" {
		t.Errorf("after a patch to global the client has residency %q", got)
	}

	// Removing the residency (null in a merge patch) or leaving it out of a PUT
	// would make "no restriction" a default: refused.
	for _, tc := range []struct{ name, method, body string }{
		{"patch to null", http.MethodPatch, `{"residency":null}`},
		{"put without residency", http.MethodPut, `{"tenant":"acme","tier":"default"}`},
		{"put with empty residency", http.MethodPut, `{"tenant":"acme","tier":"default","residency":""}`},
	} {
		r := h.do(tc.method, "/admin/v1/clients/old", tc.body, "If-Match", `"4"`)
		if r.status != http.StatusUnprocessableEntity || len(r.errorFields(t)) != 1 || r.errorFields(t)[0] != "residency" {
			t.Errorf("%s: %d %s, want 422 naming residency", tc.name, r.status, r.body)
		}
	}
	matches(t, "put eu", h.must(http.StatusOK, http.MethodPut, "/admin/v1/clients/old", `{"tenant":"acme","tier":"default","residency":"eu"}`,
		"If-Match", `"4"`).json(t), map[string]any{"residency": "eu", "enabled": true})

	// A residency naming no rule is a 422 on residency, not a 500.
	r = h.do(http.MethodPut, "/admin/v1/clients/old", `{"tenant":"acme","tier":"default","residency":"mars"}`, "If-Match", `"5"`)
	if r.status != http.StatusUnprocessableEntity || !strings.Contains(string(r.body), `no residency named \"mars\"`) {
		t.Errorf("put with an unknown residency: %d %s", r.status, r.body)
	}
}

// TestResidencyRuleEndpointURL: endpoint_url is optional, kept as given, and shown
// only when set.
func TestResidencyRuleEndpointURL(t *testing.T) {
	h := newHarness(t)
	h.fixture()
	matches(t, "rule without endpoint", h.must(http.StatusOK, http.MethodGet, "/admin/v1/residency-rules/eu", "").json(t),
		map[string]any{"endpoint_url": nil})
	h.must(http.StatusOK, http.MethodPatch, "/admin/v1/residency-rules/eu", `{"endpoint_url":"https://eu.gateway.example.com"}`, "If-Match", `"1"`)
	snap, err := h.st.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.ResidencyRules) != 1 || snap.ResidencyRules[0].EndpointURL != "https://eu.gateway.example.com" {
		t.Fatalf("snapshot residency rules = %+v", snap.ResidencyRules)
	}
	matches(t, "endpoint removed", h.must(http.StatusOK, http.MethodPatch, "/admin/v1/residency-rules/eu", `{"endpoint_url":null}`, "If-Match", `"2"`).json(t),
		map[string]any{"endpoint_url": nil, "allowed_regions": []string{"eu"}})
}
