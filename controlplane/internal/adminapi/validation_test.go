package adminapi_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

func TestBadInputIsRefusedWithEveryProblemAtOnce(t *testing.T) {
	h := newHarness(t)
	h.fixture()
	tests := []struct {
		name, method, path, body string
		headers                  []string
		status                   int
		code                     string
		fields                   []string // every field that must be reported
	}{
		{
			name: "tier with many bad fields", method: http.MethodPost, path: "/admin/v1/tiers",
			body: `{"name":"Gold Tier","requests_per_minute":0,"tokens_per_hour":-5,"max_concurrent_requests":"five",
				"allowed_models":["GPT 4"],"allowed_operations":["chat","fine_tuning"],"default_max_tokens":-1,"colour":"gold",
				"max_choices":129,"max_output_tokens":-1}`,
			status: http.StatusUnprocessableEntity, code: "validation_failed",
			fields: []string{"name", "requests_per_minute", "tokens_per_hour", "max_concurrent_requests",
				"allowed_models", "allowed_operations", "default_max_tokens", "colour", "max_choices", "max_output_tokens"},
		},
		{
			name: "tier with a default budget over its cap", method: http.MethodPost, path: "/admin/v1/tiers",
			body: `{"name":"capped","requests_per_minute":1,"tokens_per_hour":1,"max_concurrent_requests":1,
				"default_max_tokens":2048,"max_output_tokens":1024}`,
			status: http.StatusUnprocessableEntity, code: "validation_failed", fields: []string{"default_max_tokens"},
		},
		{
			name: "tier with bounds that are not integers", method: http.MethodPost, path: "/admin/v1/tiers",
			body: `{"name":"capped","requests_per_minute":1,"tokens_per_hour":1,"max_concurrent_requests":1,
				"max_choices":1.5,"max_output_tokens":"1024"}`,
			status: http.StatusUnprocessableEntity, code: "validation_failed", fields: []string{"max_choices", "max_output_tokens"},
		},
		{
			name: "deployment with many bad fields", method: http.MethodPost, path: "/admin/v1/deployments",
			body: `{"name":"d1","provider":"openai","region":"EU West","kind":"edge","base_url":"ftp://example.com",
				"key_source":"env","tls":{"min_version":"SSL3","pin_sha256":["nope"],"extra":1},"timeout_seconds":0,
				"retry":{"max_attempts":100,"backoff":"random"},"circuit_breaker":{"failure_threshold":0}}`,
			status: http.StatusUnprocessableEntity, code: "validation_failed",
			fields: []string{"region", "kind", "base_url", "key_source", "key_path", "tls.min_version", "tls.pin_sha256", "tls.extra",
				"timeout_seconds", "retry.max_attempts", "retry.backoff", "circuit_breaker.failure_threshold"},
		},
		{
			name: "vault key source without a path", method: http.MethodPost, path: "/admin/v1/deployments",
			body:   `{"name":"d2","provider":"openai","region":"eu","base_url":"https://user:pw@api.example.com","key_source":"vault"}`,
			status: http.StatusUnprocessableEntity, code: "validation_failed", fields: []string{"base_url", "key_path"},
		},
		{
			name: "client", method: http.MethodPost, path: "/admin/v1/clients",
			body:   `{"client_id":"-bad id","tenant":"","tier":"Default","enabled":"yes"}`,
			status: http.StatusUnprocessableEntity, code: "validation_failed",
			fields: []string{"client_id", "tenant", "tier", "enabled", "residency"},
		},
		{
			name: "client naming missing entities", method: http.MethodPost, path: "/admin/v1/clients",
			body:   `{"client_id":"app","tenant":"acme","tier":"gold","residency":"eu"}`,
			status: http.StatusUnprocessableEntity, code: "validation_failed", fields: []string{"tier"},
		},
		{
			name: "client naming a missing residency rule", method: http.MethodPost, path: "/admin/v1/clients",
			body:   `{"client_id":"app","tenant":"acme","tier":"default","residency":"mars"}`,
			status: http.StatusUnprocessableEntity, code: "validation_failed", fields: []string{"residency"},
		},
		{
			name: "client without residency", method: http.MethodPost, path: "/admin/v1/clients",
			body:   `{"client_id":"app","tenant":"acme","tier":"default"}`,
			status: http.StatusUnprocessableEntity, code: "validation_failed", fields: []string{"residency"},
		},
		{
			name: "client with null residency", method: http.MethodPost, path: "/admin/v1/clients",
			body:   `{"client_id":"app","tenant":"acme","tier":"default","residency":null}`,
			status: http.StatusUnprocessableEntity, code: "validation_failed", fields: []string{"residency"},
		},
		{
			name: "client with empty residency", method: http.MethodPost, path: "/admin/v1/clients",
			body:   `{"client_id":"app","tenant":"acme","tier":"default","residency":""}`,
			status: http.StatusUnprocessableEntity, code: "validation_failed", fields: []string{"residency"},
		},
		{
			name: "client with a residency that is no name", method: http.MethodPost, path: "/admin/v1/clients",
			body:   `{"client_id":"app","tenant":"acme","tier":"default","residency":"Global"}`,
			status: http.StatusUnprocessableEntity, code: "validation_failed", fields: []string{"residency"},
		},
		{
			name: "deployment without a key source", method: http.MethodPost, path: "/admin/v1/deployments",
			body:   `{"name":"d3","provider":"openai","region":"eu","base_url":"https://api.example.com"}`,
			status: http.StatusUnprocessableEntity, code: "validation_failed", fields: []string{"key_source"},
		},
		{
			name: "deployment with bad rotation settings", method: http.MethodPost, path: "/admin/v1/deployments",
			body: `{"name":"d4","provider":"openai","region":"eu","base_url":"https://api.example.com","key_source":"vault",
				"key_path":"secret/portcullis/d4","rotation_interval_days":-1,"rotation_overlap_hours":721,"minter":"openai_admin"}`,
			status: http.StatusUnprocessableEntity, code: "validation_failed",
			fields: []string{"rotation_interval_days", "rotation_overlap_hours", "admin_key_path", "admin_project_id"},
		},
		{
			name: "minter that does not fit the key source", method: http.MethodPost, path: "/admin/v1/deployments",
			body: `{"name":"d5","provider":"openai","region":"eu","base_url":"https://api.example.com","key_source":"file",
				"key_path":"/run/key","minter":"vault_dynamic","rotation_interval_days":30}`,
			status: http.StatusUnprocessableEntity, code: "validation_failed", fields: []string{"minter"},
		},
		{
			name: "schedule without a minter on a file key", method: http.MethodPost, path: "/admin/v1/deployments",
			body:   `{"name":"d6","provider":"openai","region":"eu","base_url":"https://api.example.com","key_source":"file","key_path":"/run/key","rotation_interval_days":30}`,
			status: http.StatusUnprocessableEntity, code: "validation_failed", fields: []string{"minter"},
		},
		{
			name: "model with a bad price and weight", method: http.MethodPost, path: "/admin/v1/models",
			body:   `{"name":"gpt-4o","deployment":"openai-eu","upstream_model":"gpt-4o","input_usd_per_1m":-1,"weight":1001}`,
			status: http.StatusUnprocessableEntity, code: "validation_failed", fields: []string{"input_usd_per_1m", "weight"},
		},
		{
			name: "revoked token without expiry", method: http.MethodPost, path: "/admin/v1/revoked-tokens",
			body: `{"jti":"j1","expires_at":"tomorrow"}`, status: http.StatusUnprocessableEntity, code: "validation_failed",
			fields: []string{"expires_at"},
		},
		{
			name: "residency rule without regions", method: http.MethodPost, path: "/admin/v1/residency-rules",
			body: `{"residency":"ch","allowed_regions":[]}`, status: http.StatusUnprocessableEntity, code: "validation_failed",
			fields: []string{"allowed_regions"},
		},
		{
			name: "residency rule named global", method: http.MethodPost, path: "/admin/v1/residency-rules",
			body: `{"residency":"global","allowed_regions":["eu","us"]}`, status: http.StatusUnprocessableEntity, code: "validation_failed",
			fields: []string{"residency"},
		},
		{
			name: "residency rule global replaced", method: http.MethodPut, path: "/admin/v1/residency-rules/global",
			body: `{"allowed_regions":["eu"]}`, headers: []string{"If-Match", `"1"`},
			status: http.StatusUnprocessableEntity, code: "validation_failed", fields: []string{"residency"},
		},
		{
			name: "residency rule with a relative endpoint", method: http.MethodPost, path: "/admin/v1/residency-rules",
			body:   `{"residency":"ch","allowed_regions":["ch"],"endpoint_url":"ch.gateway.example.com"}`,
			status: http.StatusUnprocessableEntity, code: "validation_failed", fields: []string{"endpoint_url"},
		},
		{
			name: "residency rule with credentials in its endpoint", method: http.MethodPost, path: "/admin/v1/residency-rules",
			body:   `{"residency":"ch","allowed_regions":["ch"],"endpoint_url":"https://ops:pw@ch.gateway.example.com"}`,
			status: http.StatusUnprocessableEntity, code: "validation_failed", fields: []string{"endpoint_url"},
		},
		{
			name: "residency rule with a query in its endpoint", method: http.MethodPost, path: "/admin/v1/residency-rules",
			body:   `{"residency":"ch","allowed_regions":["ch"],"endpoint_url":"https://ch.gateway.example.com/?region=ch"}`,
			status: http.StatusUnprocessableEntity, code: "validation_failed", fields: []string{"endpoint_url"},
		},
		{
			name: "residency rule with a fragment in its endpoint", method: http.MethodPost, path: "/admin/v1/residency-rules",
			body:   `{"residency":"ch","allowed_regions":["ch"],"endpoint_url":"https://ch.gateway.example.com/#ch"}`,
			status: http.StatusUnprocessableEntity, code: "validation_failed", fields: []string{"endpoint_url"},
		},
		{
			name: "residency rule with an endpoint that is not a string", method: http.MethodPost, path: "/admin/v1/residency-rules",
			body:   `{"residency":"ch","allowed_regions":["ch"],"endpoint_url":8081}`,
			status: http.StatusUnprocessableEntity, code: "validation_failed", fields: []string{"endpoint_url"},
		},
		{
			name: "changing the key", method: http.MethodPut, path: "/admin/v1/tenants/acme",
			body: `{"name":"other"}`, headers: []string{"If-Match", `"1"`},
			status: http.StatusUnprocessableEntity, code: "validation_failed", fields: []string{"name"},
		},
		{
			name: "malformed JSON", method: http.MethodPost, path: "/admin/v1/tenants",
			body: `{"name":`, status: http.StatusBadRequest, code: "invalid_json",
		},
		{
			name: "not an object", method: http.MethodPost, path: "/admin/v1/tenants",
			body: `["acme"]`, status: http.StatusBadRequest, code: "invalid_json",
		},
		{
			name: "wrong content type", method: http.MethodPost, path: "/admin/v1/tenants",
			body: `{"name":"x"}`, headers: []string{"Content-Type", "text/plain"},
			status: http.StatusUnsupportedMediaType, code: "unsupported_media_type",
		},
		{
			name: "body too large", method: http.MethodPost, path: "/admin/v1/tenants",
			body:   `{"name":"x","display_name":"` + strings.Repeat("a", 2<<20) + `"}`,
			status: http.StatusRequestEntityTooLarge, code: "body_too_large",
		},
		{
			name: "bad limit", method: http.MethodGet, path: "/admin/v1/tenants?limit=501",
			status: http.StatusBadRequest, code: "invalid_request",
		},
		{
			name: "bad cursor", method: http.MethodGet, path: "/admin/v1/tenants?cursor=bogus",
			status: http.StatusBadRequest, code: "invalid_request",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := h.version()
			r := h.do(tc.method, tc.path, tc.body, tc.headers...)
			if r.status != tc.status || r.errorCode(t) != tc.code {
				t.Fatalf("got %d %q, want %d %q: %s", r.status, r.errorCode(t), tc.status, tc.code, r.body)
			}
			got := r.errorFields(t)
			for _, f := range tc.fields {
				if !slices.Contains(got, f) {
					t.Errorf("field %s not reported; got %v", f, got)
				}
			}
			if len(got) != len(tc.fields) {
				t.Errorf("reported fields %v, want exactly %v", got, tc.fields)
			}
			if v := h.version(); v != before {
				t.Errorf("a refused request moved the policy version from %d to %d", before, v)
			}
		})
	}
}

func TestEnvKeySourceNamesTheDevFlag(t *testing.T) {
	h := newHarness(t)
	h.fixture()
	r := h.do(http.MethodPost, "/admin/v1/deployments",
		`{"name":"d","provider":"openai","region":"eu","base_url":"https://api.example.com","key_source":"env"}`)
	if r.status != http.StatusUnprocessableEntity || !strings.Contains(string(r.body), "dev flag") {
		t.Fatalf("got %d %s", r.status, r.body)
	}
}
