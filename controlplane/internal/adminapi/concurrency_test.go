package adminapi_test

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
)

func TestIfMatchGuardsEveryWrite(t *testing.T) {
	h := newHarness(t)
	h.fixture() // tenant acme is at revision 1
	h.must(http.StatusOK, http.MethodPatch, "/admin/v1/tenants/acme", `{"display_name":"Acme"}`, "If-Match", `"1"`)

	tests := []struct {
		name, method, body string
		ifMatch            string // "" sends no If-Match
		status             int
		code               string
	}{
		{"put without If-Match", http.MethodPut, `{"display_name":"x"}`, "", http.StatusPreconditionRequired, "precondition_required"},
		{"patch without If-Match", http.MethodPatch, `{"display_name":"x"}`, "", http.StatusPreconditionRequired, "precondition_required"},
		{"put with a stale ETag", http.MethodPut, `{"display_name":"x"}`, `"1"`, http.StatusPreconditionFailed, "precondition_failed"},
		{"patch with a stale ETag", http.MethodPatch, `{"display_name":"x"}`, `"1"`, http.StatusPreconditionFailed, "precondition_failed"},
		{"weak ETags never match", http.MethodPut, `{"display_name":"x"}`, `W/"2"`, http.StatusPreconditionFailed, "precondition_failed"},
		{"garbage never matches", http.MethodPut, `{"display_name":"x"}`, `two`, http.StatusPreconditionFailed, "precondition_failed"},
		{"delete with a stale ETag", http.MethodDelete, "", `"1"`, http.StatusPreconditionFailed, "precondition_failed"},
		{"one of several ETags matches", http.MethodPatch, `{"display_name":"y"}`, `"1", "2"`, http.StatusOK, ""},
		{"star matches any revision", http.MethodPut, `{"display_name":"z"}`, `*`, http.StatusOK, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var headers []string
			if tc.ifMatch != "" {
				headers = []string{"If-Match", tc.ifMatch}
			}
			r := h.do(tc.method, "/admin/v1/tenants/acme", tc.body, headers...)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.code != "" && r.errorCode(t) != tc.code {
				t.Fatalf("code %q, want %q", r.errorCode(t), tc.code)
			}
		})
	}
	if r := h.must(http.StatusOK, http.MethodGet, "/admin/v1/tenants/acme", ""); r.header.Get("ETag") != `"4"` {
		t.Fatalf(`ETag %q after two accepted writes, want "4"`, r.header.Get("ETag"))
	}
	h.must(http.StatusNoContent, http.MethodDelete, "/admin/v1/tenants/acme", "")
}

func TestConflicts(t *testing.T) {
	h := newHarness(t)
	h.fixture()
	h.must(http.StatusCreated, http.MethodPost, "/admin/v1/clients", `{"client_id":"app","tenant":"acme","tier":"default","residency":"eu"}`)
	h.must(http.StatusCreated, http.MethodPost, "/admin/v1/models", `{"id":"m1","name":"gpt-4o","deployment":"openai-eu","upstream_model":"gpt-4o"}`)

	tests := []struct {
		name, method, path, body string
	}{
		{"duplicate tenant", http.MethodPost, "/admin/v1/tenants", `{"name":"acme"}`},
		{"duplicate client", http.MethodPost, "/admin/v1/clients", `{"client_id":"app","tenant":"acme","tier":"default","residency":"global"}`},
		{"duplicate model name on one deployment", http.MethodPost, "/admin/v1/models", `{"name":"gpt-4o","deployment":"openai-eu","upstream_model":"other"}`},
		{"delete a tier clients use", http.MethodDelete, "/admin/v1/tiers/default", ""},
		{"delete a tenant clients use", http.MethodDelete, "/admin/v1/tenants/acme", ""},
		{"delete a residency rule clients use", http.MethodDelete, "/admin/v1/residency-rules/eu", ""},
		{"delete a deployment models use", http.MethodDelete, "/admin/v1/deployments/openai-eu", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, calls := h.version(), h.changes.Load()
			r := h.do(tc.method, tc.path, tc.body)
			if r.status != http.StatusConflict || r.errorCode(t) != "conflict" {
				t.Fatalf("got %d %s, want 409 conflict", r.status, r.body)
			}
			if h.version() != before || h.changes.Load() != calls {
				t.Fatal("a refused write changed the policy version or called onChange")
			}
		})
	}
}

func TestPaginationWalksEveryItemExactlyOnce(t *testing.T) {
	h := newHarness(t)
	h.fixture()
	var want []string
	for i := range 23 {
		id := fmt.Sprintf("app-%02d", i)
		want = append(want, id)
		h.must(http.StatusCreated, http.MethodPost, "/admin/v1/clients", fmt.Sprintf(`{"client_id":%q,"tenant":"acme","tier":"default","residency":"global"}`, id))
	}
	slices.Sort(want)
	for _, limit := range []int{1, 7, 23, 500} {
		t.Run(fmt.Sprintf("limit %d", limit), func(t *testing.T) {
			var got []string
			path := fmt.Sprintf("/admin/v1/clients?limit=%d", limit)
			for pages := 0; ; pages++ {
				if pages > 30 {
					t.Fatal("pagination does not end")
				}
				body := h.must(http.StatusOK, http.MethodGet, path, "").json(t)
				items := body["items"].([]any)
				if len(items) > limit {
					t.Fatalf("%d items in a page of %d", len(items), limit)
				}
				for _, it := range items {
					got = append(got, it.(map[string]any)["client_id"].(string))
				}
				next, ok := body["next_cursor"].(string)
				if !ok {
					if body["next_cursor"] != nil {
						t.Fatalf("next_cursor %v", body["next_cursor"])
					}
					break
				}
				path = fmt.Sprintf("/admin/v1/clients?limit=%d&cursor=%s", limit, next)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("walked %v, want %v", got, want)
			}
		})
	}
	if body := h.must(http.StatusOK, http.MethodGet, "/admin/v1/clients", "").json(t); len(body["items"].([]any)) != 23 {
		t.Fatalf("default page holds %d items, want all 23 (limit 50)", len(body["items"].([]any)))
	}
}
