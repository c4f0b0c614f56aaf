package adminapi_test

import (
	"context"
	"net/http"
	"slices"
	"testing"

	"github.com/portcullis-gw/portcullis/shared/policy"
)

// TestGuardrailPolicies: a tier's guardrail policy and a tenant's and client's
// overrides are stored and published; bad actions, redact for injection, misplaced
// thresholds and unknown fields are 422 naming the field; a tenant admin cannot set
// or change a client's guardrails.
func TestGuardrailPolicies(t *testing.T) {
	h := newHarness(t)
	h.fixture()
	h.must(http.StatusOK, http.MethodPatch, "/admin/v1/tiers/default",
		`{"guardrails":{"pii":{"input":"redact","output":"flag"},"injection":{"input":"block","threshold":0.7},"pseudonymise":true}}`, "If-Match", "*")
	h.must(http.StatusOK, http.MethodPatch, "/admin/v1/tenants/acme", `{"guardrails":{"secrets":{"output":"block"}}}`, "If-Match", "*")
	h.must(http.StatusCreated, http.MethodPost, "/admin/v1/clients",
		`{"client_id":"app-1","tenant":"acme","tier":"default","residency":"eu","guardrails":{"pii":{"input":"block"}}}`)

	snap, err := h.st.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tier := snap.Tiers[slices.IndexFunc(snap.Tiers, func(x policy.Tier) bool { return x.Name == "default" })]
	if tier.Guardrails.PII.Input != "redact" || tier.Guardrails.Injection.Threshold == nil || *tier.Guardrails.Injection.Threshold != 0.7 ||
		tier.Guardrails.Pseudonymise == nil || !*tier.Guardrails.Pseudonymise {
		t.Fatalf("published tier guardrails %+v", tier.Guardrails)
	}
	if snap.Tenants[0].Guardrails == nil || snap.Tenants[0].Guardrails.Secrets.Output != "block" {
		t.Fatalf("published tenant guardrails %+v", snap.Tenants[0].Guardrails)
	}
	if c := snap.Clients[0]; c.Guardrails == nil || c.Guardrails.PII.Input != "block" {
		t.Fatalf("published client guardrails %+v", c.Guardrails)
	}
	if err := snap.Validate(); err != nil {
		t.Fatalf("the published snapshot does not validate: %v", err)
	}

	for _, c := range []struct{ name, body, field string }{
		{"unknown action", `{"guardrails":{"pii":{"input":"mask"}}}`, "guardrails.pii.input"},
		{"redact an injection", `{"guardrails":{"injection":{"output":"redact"}}}`, "guardrails.injection.output"},
		{"threshold on pii", `{"guardrails":{"pii":{"threshold":0.5}}}`, "guardrails.pii.threshold"},
		{"threshold above 1", `{"guardrails":{"injection":{"threshold":1.5}}}`, "guardrails.injection.threshold"},
		{"unknown family field", `{"guardrails":{"pii":{"inptu":"block"}}}`, "guardrails.pii.inptu"},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, path := range []string{"/admin/v1/tiers/default", "/admin/v1/tenants/acme", "/admin/v1/clients/app-1"} {
				r := h.do(http.MethodPatch, path, c.body, "If-Match", "*")
				wantStatus(t, path+" "+c.name, r, http.StatusUnprocessableEntity, "validation_failed")
				if !slices.Contains(r.errorFields(t), c.field) {
					t.Fatalf("%s: fields %v lack %s", path, r.errorFields(t), c.field)
				}
			}
		})
	}

	ta := h.tokenFor("acme-admin", "tenant_admin:acme")
	wantStatus(t, "a tenant admin turns a client's guardrails off", h.as(ta, http.MethodPatch, "/admin/v1/clients/app-1",
		`{"guardrails":{"pii":{"input":"off"}}}`, "If-Match", "*"), http.StatusForbidden, "forbidden")
	wantStatus(t, "a tenant admin creates a client with guardrails", h.as(ta, http.MethodPost, "/admin/v1/clients",
		`{"client_id":"app-2","tenant":"acme","tier":"default","residency":"eu","guardrails":{"pii":{"input":"off"}}}`),
		http.StatusForbidden, "forbidden")
	wantStatus(t, "a tenant admin disables a client (guardrails kept)", h.as(ta, http.MethodPatch, "/admin/v1/clients/app-1",
		`{"enabled":false}`, "If-Match", "*"), http.StatusOK, "")
}
