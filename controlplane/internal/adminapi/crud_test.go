package adminapi_test

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// matches fails the test unless every field of want has that value in got; a nil want
// value means the field is absent.
func matches(t *testing.T, step string, got, want map[string]any) {
	t.Helper()
	for k, w := range want {
		g, ok := got[k]
		if w == nil {
			if ok {
				t.Errorf("%s: field %s = %v, want it absent", step, k, g)
			}
			continue
		}
		// Compare through JSON so that 30 and 30.0 are equal.
		wb, _ := json.Marshal(w)
		var wv any
		_ = json.Unmarshal(wb, &wv)
		if !reflect.DeepEqual(g, wv) {
			t.Errorf("%s: field %s = %v, want %v", step, k, g, wv)
		}
	}
}

func TestCRUDRoundTripOfEveryResource(t *testing.T) {
	h := newHarness(t)
	h.fixture()

	type m = map[string]any
	tests := []struct {
		name                           string
		path                           string
		create, put, patch             string
		wantCreate, wantPut, wantPatch m
	}{
		{
			name: "tenant", path: "tenants",
			create: `{"name":"globex","display_name":"Globex"}`, wantCreate: m{"name": "globex", "display_name": "Globex"},
			put: `{"display_name":"Globex Corp"}`, wantPut: m{"display_name": "Globex Corp"},
			patch: `{"display_name":null}`, wantPatch: m{"name": "globex", "display_name": nil},
		},
		{
			name: "tier", path: "tiers",
			create: `{"name":"tier_premium","requests_per_minute":600,"tokens_per_hour":2000000,"max_concurrent_requests":50,
				"allowed_models":["gpt-4o","claude-3-5-sonnet","llama3-70b"],"max_choices":4,"max_output_tokens":8192}`,
			wantCreate: m{"requests_per_minute": 600, "allowed_operations": []string{"completion", "embeddings"}, "default_max_tokens": 0,
				"max_choices": 4, "max_output_tokens": 8192},
			put:     `{"requests_per_minute":30,"tokens_per_hour":50000,"max_concurrent_requests":3,"allowed_models":["gpt-4o-mini"],"allowed_operations":["completion"]}`,
			wantPut: m{"requests_per_minute": 30, "allowed_models": []string{"gpt-4o-mini"}, "allowed_operations": []string{"completion"}, "max_choices": 0, "max_output_tokens": 0},
			patch:   `{"requests_per_minute":45,"default_max_tokens":1024,"max_choices":128,"max_output_tokens":1024}`,
			wantPatch: m{"requests_per_minute": 45, "tokens_per_hour": 50000, "default_max_tokens": 1024, "allowed_operations": []string{"completion"},
				"max_choices": 128, "max_output_tokens": 1024},
		},
		{
			name: "client", path: "clients",
			create:     `{"client_id":"Moltbot-Agent-07","tenant":"acme","tier":"default","residency":"eu"}`,
			wantCreate: m{"client_id": "Moltbot-Agent-07", "tenant": "acme", "tier": "default", "residency": "eu", "enabled": true},
			put:        `{"client_id":"Moltbot-Agent-07","tenant":"acme","tier":"default","residency":"global"}`,
			wantPut:    m{"residency": "global", "enabled": true},
			patch:      `{"enabled":false}`,
			wantPatch:  m{"enabled": false, "tier": "default"},
		},
		{
			name: "provider", path: "providers",
			create: `{"name":"anthropic","kind":"anthropic"}`, wantCreate: m{"kind": "anthropic"},
			put: `{"kind":"ollama"}`, wantPut: m{"kind": "ollama"},
			patch: `{"kind":"openai"}`, wantPatch: m{"kind": "openai"},
		},
		{
			name: "deployment", path: "deployments",
			create: `{"name":"ollama-eu","provider":"openai","region":"eu","kind":"self_hosted","base_url":"http://127.0.0.1:11434/v1","key_source":"none"}`,
			wantCreate: m{"kind": "self_hosted", "key_source": "none", "rotation_interval_days": 0, "rotation_overlap_hours": 2, "tls": m{"verify": true}, "timeout_seconds": 30,
				"retry": m{"max_attempts": 3, "backoff": "exponential"}, "circuit_breaker": m{"failure_threshold": 5, "reset_timeout_seconds": 60, "half_open_max_requests": 1}, "connect_timeout_seconds": 10, "total_timeout_seconds": 600, "enabled": true},
			put: `{"provider":"openai","region":"eu","base_url":"https://api.example.com/v1","key_source":"file","key_path":"/run/keys/openai",
				"tls":{"min_version":"TLS1.3"}}`,
			wantPut:   m{"kind": "cloud", "key_source": "file", "key_path": "/run/keys/openai", "tls": m{"verify": true, "min_version": "TLS1.3"}},
			patch:     `{"retry":{"max_attempts":5},"enabled":false}`,
			wantPatch: m{"retry": m{"max_attempts": 5, "backoff": "exponential"}, "enabled": false, "key_source": "file"},
		},
		{
			name: "model", path: "models",
			create:     `{"name":"gpt-4o","deployment":"openai-eu","upstream_model":"gpt-4o-2024-08-06","input_usd_per_1m":2.5,"output_usd_per_1m":10}`,
			wantCreate: m{"name": "gpt-4o", "upstream_model": "gpt-4o-2024-08-06", "input_usd_per_1m": 2.5, "output_usd_per_1m": 10, "weight": 1},
			put:        `{"name":"gpt-4o","deployment":"openai-eu","upstream_model":"gpt-4o","weight":0}`,
			wantPut:    m{"upstream_model": "gpt-4o", "input_usd_per_1m": 0, "weight": 0},
			patch:      `{"output_usd_per_1m":12.5,"weight":3}`,
			wantPatch:  m{"output_usd_per_1m": 12.5, "upstream_model": "gpt-4o", "weight": 3},
		},
		{
			name: "residency rule", path: "residency-rules",
			create:     `{"residency":"us","allowed_regions":["us"],"endpoint_url":"https://us.gateway.example.com"}`,
			wantCreate: m{"allowed_regions": []string{"us"}, "endpoint_url": "https://us.gateway.example.com"},
			put:        `{"allowed_regions":["us","ca"]}`,
			wantPut:    m{"allowed_regions": []string{"us", "ca"}, "endpoint_url": nil},
			patch:      `{"allowed_regions":["ca"],"endpoint_url":"http://127.0.0.1:8082"}`,
			wantPatch:  m{"allowed_regions": []string{"ca"}, "endpoint_url": "http://127.0.0.1:8082"},
		},
		{
			name: "fallback map", path: "fallback-maps",
			create:     `{"provider":"openai","from_model":"gpt-4o","to_model":"llama3-70b"}`,
			wantCreate: m{"provider": "openai", "from_model": "gpt-4o", "to_model": "llama3-70b"},
			put:        `{"provider":"openai","from_model":"gpt-4o","to_model":"llama3-8b"}`,
			wantPut:    m{"to_model": "llama3-8b"},
			patch:      `{"to_model":"llama3-70b"}`,
			wantPatch:  m{"to_model": "llama3-70b"},
		},
		{
			name: "revoked token", path: "revoked-tokens",
			create:     `{"jti":"0b8f4a3e-5c1d","expires_at":"2030-01-02T15:04:05Z","reason":"leaked"}`,
			wantCreate: m{"jti": "0b8f4a3e-5c1d", "expires_at": "2030-01-02T15:04:05Z", "reason": "leaked"},
			put:        `{"expires_at":"2031-01-01T00:00:00Z"}`,
			wantPut:    m{"expires_at": "2031-01-01T00:00:00Z", "reason": nil},
			patch:      `{"reason":"rotated"}`,
			wantPatch:  m{"reason": "rotated"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			coll := "/admin/v1/" + tc.path
			created := h.must(http.StatusCreated, http.MethodPost, coll, tc.create)
			loc := created.header.Get("Location")
			if !strings.HasPrefix(loc, coll+"/") {
				t.Fatalf("Location %q is not under %s", loc, coll)
			}
			if etag := created.header.Get("ETag"); etag != `"1"` {
				t.Fatalf(`ETag %q after create, want "1"`, etag)
			}
			body := created.json(t)
			matches(t, "create", body, tc.wantCreate)
			matches(t, "create", body, m{"revision": 1})
			if body["created_at"] == nil || body["updated_at"] == nil {
				t.Errorf("create: no timestamps in %s", created.body)
			}

			got := h.must(http.StatusOK, http.MethodGet, loc, "")
			if got.header.Get("ETag") != `"1"` || !reflect.DeepEqual(got.json(t), body) {
				t.Fatalf("GET differs from the created entity: %s vs %s", got.body, created.body)
			}

			put := h.must(http.StatusOK, http.MethodPut, loc, tc.put, "If-Match", `"1"`)
			if put.header.Get("ETag") != `"2"` {
				t.Fatalf(`ETag %q after PUT, want "2"`, put.header.Get("ETag"))
			}
			matches(t, "put", put.json(t), tc.wantPut)

			patched := h.must(http.StatusOK, http.MethodPatch, loc, tc.patch, "If-Match", `"2"`,
				"Content-Type", "application/merge-patch+json")
			if patched.header.Get("ETag") != `"3"` {
				t.Fatalf(`ETag %q after PATCH, want "3"`, patched.header.Get("ETag"))
			}
			matches(t, "patch", patched.json(t), tc.wantPatch)
			matches(t, "get after patch", h.must(http.StatusOK, http.MethodGet, loc, "").json(t), tc.wantPatch)

			h.must(http.StatusNoContent, http.MethodDelete, loc, "", "If-Match", `"3"`)
			if r := h.do(http.MethodGet, loc, ""); r.status != http.StatusNotFound || r.errorCode(t) != "not_found" {
				t.Fatalf("GET after DELETE: %d %s", r.status, r.body)
			}
		})
	}
}

func TestAdminRoutesNeedTheTokenAndSpeakTheAdminSchema(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		name         string
		method, path string
		auth         bool
		status       int
		code         string
	}{
		{"list without token", http.MethodGet, "/admin/v1/tenants", false, http.StatusUnauthorized, "unauthorized"},
		{"unknown route without token", http.MethodGet, "/admin/v1/nothing", false, http.StatusUnauthorized, "unauthorized"},
		{"list", http.MethodGet, "/admin/v1/tenants", true, http.StatusOK, ""},
		{"unknown route", http.MethodGet, "/admin/v1/nothing/here", true, http.StatusNotFound, "not_found"},
		{"unknown item", http.MethodGet, "/admin/v1/tiers/gold", true, http.StatusNotFound, "not_found"},
		{"method not allowed", http.MethodPost, "/admin/v1/tenants/acme", true, http.StatusMethodNotAllowed, "method_not_allowed"},
		{"key no entity can have", http.MethodGet, "/admin/v1/tiers/GOLD%20TIER", true, http.StatusNotFound, "not_found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r response
			if tc.auth {
				r = h.do(tc.method, tc.path, "")
			} else {
				r = h.send(tc.method, tc.path, "")
			}
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.code != "" && r.errorCode(t) != tc.code {
				t.Fatalf("code %q, want %q: %s", r.errorCode(t), tc.code, r.body)
			}
		})
	}
}
