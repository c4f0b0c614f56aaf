package adminapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/controlplane/admintest"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
)

// as sends a request with token; headers are name, value pairs.
func (h *harness) as(token, method, path, body string, headers ...string) response {
	h.t.Helper()
	return h.send(method, path, body, append([]string{"Authorization", "Bearer " + token}, headers...)...)
}

// tokenFor returns an API token of a new service account name holding roles.
func (h *harness) tokenFor(name string, roles ...string) string {
	h.t.Helper()
	return admintest.Token(h.t, h.url, h.bootstrap, name, roles...)
}

// wantStatus fails the test unless r has status want and, for errors, code.
func wantStatus(t *testing.T, what string, r response, want int, code string) {
	t.Helper()
	if r.status != want {
		t.Fatalf("%s: status %d, want %d: %s", what, r.status, want, r.body)
	}
	if code != "" && r.errorCode(t) != code {
		t.Fatalf("%s: code %q, want %q: %s", what, r.errorCode(t), code, r.body)
	}
}

// keys lists the values of field in a list answer's items.
func keys(t *testing.T, r response, field string) []string {
	t.Helper()
	var page struct{ Items []map[string]any }
	if err := json.Unmarshal(r.body, &page); err != nil {
		t.Fatalf("list body %s: %v", r.body, err)
	}
	var out []string
	for _, it := range page.Items {
		out = append(out, it[field].(string))
	}
	return out
}

// TestTenantAdminSeesOnlyItsTenant: a tenant_admin of acme manages acme's clients
// and their overrides, and learns nothing of globex: its clients are 404, not 403,
// its name is in no list, and usage shows acme's rows only.
func TestTenantAdminSeesOnlyItsTenant(t *testing.T) {
	h := newHarness(t)
	h.fixture()
	h.must(http.StatusCreated, http.MethodPost, "/admin/v1/tenants", `{"name":"globex"}`)
	h.must(http.StatusCreated, http.MethodPost, "/admin/v1/clients", `{"client_id":"acme-app","tenant":"acme","tier":"default","residency":"eu"}`)
	h.must(http.StatusCreated, http.MethodPost, "/admin/v1/clients", `{"client_id":"globex-app","tenant":"globex","tier":"default","residency":"eu"}`)
	h.must(http.StatusOK, http.MethodPut, "/admin/v1/clients/globex-app/limit-override", `{"requests_per_minute":5,"ttl_seconds":600,"reason":"test"}`)
	hour := time.Now().UTC().Truncate(time.Hour)
	if err := h.st.AddHourlyUsage(context.Background(), []store.HourlyUsage{
		{Hour: hour, Region: "eu", TenantID: "acme", ClientID: "acme-app", Model: "gpt-4o-mini", Requests: 3, TokensIn: 30},
		{Hour: hour, Region: "eu", TenantID: "globex", ClientID: "globex-app", Model: "gpt-4o-mini", Requests: 7, TokensIn: 70},
	}); err != nil {
		t.Fatal(err)
	}
	ta := h.tokenFor("acme-admin", "tenant_admin:acme")

	wantStatus(t, "create acme client", h.as(ta, http.MethodPost, "/admin/v1/clients",
		`{"client_id":"acme-app-2","tenant":"acme","tier":"default","residency":"eu"}`), http.StatusCreated, "")
	if got := keys(t, h.as(ta, http.MethodGet, "/admin/v1/clients", ""), "client_id"); !slices.Equal(got, []string{"acme-app", "acme-app-2"}) {
		t.Fatalf("tenant admin lists clients %v, want acme's only", got)
	}
	if got := keys(t, h.as(ta, http.MethodGet, "/admin/v1/tenants", ""), "name"); !slices.Equal(got, []string{"acme"}) {
		t.Fatalf("tenant admin lists tenants %v, want acme only", got)
	}
	wantStatus(t, "disable acme client", h.as(ta, http.MethodPatch, "/admin/v1/clients/acme-app-2", `{"enabled":false}`, "If-Match", "*"), http.StatusOK, "")
	wantStatus(t, "override acme client", h.as(ta, http.MethodPut, "/admin/v1/clients/acme-app/limit-override",
		`{"requests_per_minute":9,"ttl_seconds":600,"reason":"launch"}`), http.StatusOK, "")
	if got := keys(t, h.as(ta, http.MethodGet, "/admin/v1/limit-overrides", ""), "client_id"); !slices.Equal(got, []string{"acme-app"}) {
		t.Fatalf("tenant admin lists overrides %v, want acme's only", got)
	}

	for _, c := range []struct{ name, method, path, body string }{
		{"get globex client", http.MethodGet, "/admin/v1/clients/globex-app", ""},
		{"patch globex client", http.MethodPatch, "/admin/v1/clients/globex-app", `{"enabled":false}`},
		{"delete globex client", http.MethodDelete, "/admin/v1/clients/globex-app", ""},
		{"get globex tenant", http.MethodGet, "/admin/v1/tenants/globex", ""},
		{"get globex override", http.MethodGet, "/admin/v1/clients/globex-app/limit-override", ""},
		{"set globex override", http.MethodPut, "/admin/v1/clients/globex-app/limit-override", `{"requests_per_minute":1,"ttl_seconds":600,"reason":"x"}`},
		{"clear globex override", http.MethodDelete, "/admin/v1/clients/globex-app/limit-override", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			wantStatus(t, c.name, h.as(ta, c.method, c.path, c.body, "If-Match", "*"), http.StatusNotFound, "not_found")
		})
	}
	r := h.as(ta, http.MethodPost, "/admin/v1/clients", `{"client_id":"sneaky","tenant":"globex","tier":"default","residency":"eu"}`)
	wantStatus(t, "create a globex client", r, http.StatusUnprocessableEntity, "validation_failed")
	if !strings.Contains(string(r.body), `no tenant named \"globex\" exists`) {
		t.Fatalf("a client of another tenant is refused as if the tenant did not exist: %s", r.body)
	}
	wantStatus(t, "move a client to globex", h.as(ta, http.MethodPatch, "/admin/v1/clients/acme-app", `{"tenant":"globex"}`, "If-Match", "*"),
		http.StatusUnprocessableEntity, "validation_failed")
	both := h.tokenFor("acme-and-globex-admin", "tenant_admin:acme", "tenant_admin:globex")
	wantStatus(t, "move a client between two own tenants", h.as(both, http.MethodPatch, "/admin/v1/clients/acme-app", `{"tenant":"globex"}`,
		"If-Match", "*"), http.StatusForbidden, "forbidden")
	// Creating in another tenant tells nothing of the tiers or residencies that
	// exist: the tenant is refused first, whatever the rest.
	for _, body := range []string{`{"client_id":"probe-1","tenant":"globex","tier":"default","residency":"eu"}`,
		`{"client_id":"probe-2","tenant":"globex","tier":"no-such-tier","residency":"no-such-rule"}`,
		`{"client_id":"probe-3","tenant":"initech","tier":"default","residency":"eu"}`} {
		r := h.as(ta, http.MethodPost, "/admin/v1/clients", body)
		wantStatus(t, "create "+body, r, http.StatusUnprocessableEntity, "validation_failed")
		if f := r.errorFields(t); len(f) != 1 || f[0] != "tenant" {
			t.Fatalf("create %s: fields %v, want tenant only", body, f)
		}
	}
	if c, err := h.st.Clients().Get(context.Background(), "globex-app"); err != nil || !c.Entity.Enabled {
		t.Fatalf("globex-app after the tenant admin's attempts: %+v, %v", c, err)
	}

	// Placement: no tier or residency of its own choosing.
	h.must(http.StatusCreated, http.MethodPost, "/admin/v1/tiers", `{"name":"gold","requests_per_minute":600,"tokens_per_hour":1000000,"max_concurrent_requests":50}`)
	wantStatus(t, "new client in an unused tier", h.as(ta, http.MethodPost, "/admin/v1/clients",
		`{"client_id":"acme-gold","tenant":"acme","tier":"gold","residency":"eu"}`), http.StatusForbidden, "forbidden")
	wantStatus(t, "new client without residency", h.as(ta, http.MethodPost, "/admin/v1/clients",
		`{"client_id":"acme-global","tenant":"acme","tier":"default","residency":"global"}`), http.StatusForbidden, "forbidden")
	wantStatus(t, "upgrade a client's tier", h.as(ta, http.MethodPatch, "/admin/v1/clients/acme-app", `{"tier":"gold"}`, "If-Match", "*"),
		http.StatusForbidden, "forbidden")

	// Usage: acme's rows only, whatever the grouping.
	for _, group := range []string{"tenant", "client", "model"} {
		from, to := hour.Format(time.RFC3339), hour.Add(time.Hour).Format(time.RFC3339)
		r := h.as(ta, http.MethodGet, "/admin/v1/usage?group_by="+group+"&from="+from+"&to="+to, "")
		wantStatus(t, "usage by "+group, r, http.StatusOK, "")
		if strings.Contains(string(r.body), "globex") || !strings.Contains(string(r.body), `"requests":3`) {
			t.Fatalf("tenant admin's usage by %s: %s", group, r.body)
		}
	}

	// Nothing else: tiers, deployments, changes, other roles' endpoints.
	for _, path := range []string{"/admin/v1/tiers", "/admin/v1/deployments", "/admin/v1/changes", "/admin/v1/principals", "/admin/v1/alerts"} {
		r := h.as(ta, http.MethodGet, path, "")
		wantStatus(t, "GET "+path, r, http.StatusForbidden, "forbidden")
		if strings.Contains(string(r.body), "globex") {
			t.Fatalf("GET %s leaks another tenant: %s", path, r.body)
		}
	}
}

// TestOnlyKeyCustodiansChangeWhereRequestsGo: an operator may tune a deployment
// but neither create one nor change its base_url, TLS or key fields, nor rotate or
// revoke keys; a key custodian may; an auditor reads and writes nothing.
func TestOnlyKeyCustodiansChangeWhereRequestsGo(t *testing.T) {
	h := newHarness(t)
	h.fixture()
	op := h.tokenFor("ops-1", "operator")
	kc := h.tokenFor("custodian-1", "key_custodian")
	au := h.tokenFor("auditor-1", "auditor")

	wantStatus(t, "operator tunes a timeout", h.as(op, http.MethodPatch, "/admin/v1/deployments/openai-eu", `{"timeout_seconds":20}`, "If-Match", "*"),
		http.StatusOK, "")
	for _, body := range []string{`{"base_url":"https://evil.example/v1"}`, `{"key_source":"vault","key_path":"secret/x"}`,
		`{"tls":{"verify":true,"ca_file":"/tmp/ca.pem"}}`, `{"rotation_overlap_hours":0}`} {
		r := h.as(op, http.MethodPatch, "/admin/v1/deployments/openai-eu", body, "If-Match", "*")
		wantStatus(t, "operator patches "+body, r, http.StatusForbidden, "forbidden")
		if r.json(t)["error"].(map[string]any)["permission"] != "deployments:keys" {
			t.Fatalf("the refusal does not name deployments:keys: %s", r.body)
		}
	}
	wantStatus(t, "operator creates a deployment", h.as(op, http.MethodPost, "/admin/v1/deployments",
		`{"name":"rogue","provider":"openai","region":"eu","base_url":"https://evil.example/v1","key_source":"none"}`), http.StatusForbidden, "forbidden")
	wantStatus(t, "operator deletes a deployment", h.as(op, http.MethodDelete, "/admin/v1/deployments/openai-eu", ""), http.StatusForbidden, "forbidden")
	for _, path := range []string{"/admin/v1/secrets/rotate", "/admin/v1/secrets/revoke"} {
		wantStatus(t, "operator "+path, h.as(op, http.MethodPost, path, `{"provider":"openai","reason":"x"}`), http.StatusForbidden, "forbidden")
		wantStatus(t, "auditor "+path, h.as(au, http.MethodPost, path, `{"provider":"openai","reason":"x"}`), http.StatusForbidden, "forbidden")
	}
	wantStatus(t, "custodian changes base_url", h.as(kc, http.MethodPatch, "/admin/v1/deployments/openai-eu",
		`{"base_url":"http://127.0.0.1:9101/v1"}`, "If-Match", "*"), http.StatusOK, "")
	wantStatus(t, "custodian cannot edit tiers", h.as(kc, http.MethodPatch, "/admin/v1/tiers/default", `{"requests_per_minute":1}`, "If-Match", "*"),
		http.StatusForbidden, "forbidden")
	wantStatus(t, "auditor reads deployments", h.as(au, http.MethodGet, "/admin/v1/deployments", ""), http.StatusOK, "")
	wantStatus(t, "auditor reads the change history", h.as(au, http.MethodGet, "/admin/v1/changes", ""), http.StatusOK, "")
	wantStatus(t, "auditor exports the change history", h.as(au, http.MethodGet, "/admin/v1/changes/export", ""), http.StatusOK, "")
	wantStatus(t, "auditor patches a deployment", h.as(au, http.MethodPatch, "/admin/v1/deployments/openai-eu", `{"timeout_seconds":9}`, "If-Match", "*"),
		http.StatusForbidden, "forbidden")
	wantStatus(t, "auditor creates a tenant", h.as(au, http.MethodPost, "/admin/v1/tenants", `{"name":"x"}`), http.StatusForbidden, "forbidden")
}

// TestBootstrapTokenOnlyMakesAdministrators: the bootstrap token manages principals
// and nothing else; a narrowed token holds only its role; a token never gets a role
// its principal lacks.
func TestBootstrapTokenOnlyMakesAdministrators(t *testing.T) {
	h := newHarness(t)
	wantStatus(t, "bootstrap reads tenants", h.as(h.bootstrap, http.MethodGet, "/admin/v1/tenants", ""), http.StatusForbidden, "forbidden")
	wantStatus(t, "bootstrap lists principals", h.as(h.bootstrap, http.MethodGet, "/admin/v1/principals", ""), http.StatusOK, "")
	wantStatus(t, "bootstrap has no tokens of its own", h.as(h.bootstrap, http.MethodPost, "/admin/v1/me/tokens",
		`{"name":"x","expires_in_seconds":3600}`), http.StatusNotFound, "not_found")

	h.must(http.StatusCreated, http.MethodPost, "/admin/v1/principals", `{"name":"multi","roles":[{"role":"operator"},{"role":"auditor"}]}`)
	r := h.must(http.StatusCreated, http.MethodPost, "/admin/v1/principals/multi/tokens", `{"name":"ro","role":"auditor","expires_in_seconds":3600}`)
	narrow := r.json(t)["token"].(string)
	wantStatus(t, "narrowed to auditor, writes a tenant", h.as(narrow, http.MethodPost, "/admin/v1/tenants", `{"name":"x"}`), http.StatusForbidden, "forbidden")
	wantStatus(t, "narrowed to auditor, reads changes", h.as(narrow, http.MethodGet, "/admin/v1/changes", ""), http.StatusOK, "")
	r = h.do(http.MethodPost, "/admin/v1/principals/multi/tokens", `{"name":"up","role":"admin","expires_in_seconds":3600}`)
	wantStatus(t, "a token with a role the principal lacks", r, http.StatusUnprocessableEntity, "validation_failed")

	for _, c := range []struct{ name, body, field string }{
		{"no expiry", `{"name":"x"}`, "expires_at"},
		{"too long", `{"name":"x","expires_in_seconds":99999999}`, "expires_in_seconds"},
		{"past", `{"name":"x","expires_at":"2020-01-01T00:00:00Z"}`, "expires_at"},
		{"no name", `{"expires_in_seconds":3600}`, "name"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := h.do(http.MethodPost, "/admin/v1/principals/multi/tokens", c.body)
			wantStatus(t, c.name, r, http.StatusUnprocessableEntity, "validation_failed")
			if !slices.Contains(r.errorFields(t), c.field) {
				t.Fatalf("fields %v lack %s", r.errorFields(t), c.field)
			}
		})
	}
	for _, c := range []struct{ name, body string }{
		{"bad role", `{"name":"p1","roles":[{"role":"root"}]}`},
		{"tenant_admin without tenant", `{"name":"p2","roles":[{"role":"tenant_admin"}]}`},
		{"tenant on admin", `{"name":"p3","roles":[{"role":"admin","tenant":"acme"}]}`},
		{"unknown tenant", `{"name":"p4","roles":[{"role":"tenant_admin","tenant":"nope"}]}`},
		{"bad name", `{"name":"Bad Name"}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			wantStatus(t, c.name, h.do(http.MethodPost, "/admin/v1/principals", c.body), http.StatusUnprocessableEntity, "validation_failed")
		})
	}
}

// TestTokensExpireAndRevokeAtOnce: a revoked token is refused by the very next
// request on every replica (two APIs over one database), an expired one too, and a
// disabled principal's tokens stop working.
func TestTokensExpireAndRevokeAtOnce(t *testing.T) {
	h := newHarness(t)
	other := h.replica()
	r := h.must(http.StatusCreated, http.MethodPost, "/admin/v1/principals", `{"name":"ci","roles":[{"role":"auditor"}]}`)
	_ = r
	r = h.must(http.StatusCreated, http.MethodPost, "/admin/v1/principals/ci/tokens", `{"name":"deploy","expires_in_seconds":3600}`)
	tok, id := r.json(t)["token"].(string), r.json(t)["id"].(string)
	if strings.Contains(string(h.must(http.StatusOK, http.MethodGet, "/admin/v1/principals/ci/tokens", "").body), tok) {
		t.Fatal("the token list shows the token itself")
	}
	for _, url := range []string{h.url, other} {
		if s := h.sendTo(url, tok, http.MethodGet, "/admin/v1/whoami"); s != http.StatusOK {
			t.Fatalf("whoami on %s: %d", url, s)
		}
	}
	h.must(http.StatusOK, http.MethodDelete, "/admin/v1/principals/ci/tokens/"+id, "")
	for _, url := range []string{h.url, other} {
		if s := h.sendTo(url, tok, http.MethodGet, "/admin/v1/whoami"); s != http.StatusUnauthorized {
			t.Fatalf("a revoked token on %s: %d, want 401", url, s)
		}
	}

	r = h.must(http.StatusCreated, http.MethodPost, "/admin/v1/principals/ci/tokens", `{"name":"short","expires_in_seconds":60}`)
	tok, id = r.json(t)["token"].(string), r.json(t)["id"].(string)
	if s := h.sendTo(h.url, tok, http.MethodGet, "/admin/v1/whoami"); s != http.StatusOK {
		t.Fatalf("a fresh token: %d", s)
	}
	h.expire(id)
	if s := h.sendTo(other, tok, http.MethodGet, "/admin/v1/whoami"); s != http.StatusUnauthorized {
		t.Fatalf("an expired token: %d, want 401", s)
	}

	r = h.must(http.StatusCreated, http.MethodPost, "/admin/v1/principals/ci/tokens", `{"name":"third","expires_in_seconds":3600}`)
	tok = r.json(t)["token"].(string)
	h.must(http.StatusOK, http.MethodPatch, "/admin/v1/principals/ci", `{"disabled":true}`)
	if s := h.sendTo(other, tok, http.MethodGet, "/admin/v1/whoami"); s != http.StatusUnauthorized {
		t.Fatalf("a disabled principal's token: %d, want 401", s)
	}
}

// TestANarrowedTokenMakesNoWiderToken: a token narrowed to one role, making a token
// for its own principal, gets that role again and no later expiry.
func TestANarrowedTokenMakesNoWiderToken(t *testing.T) {
	h := newHarness(t)
	h.fixture()
	h.must(http.StatusCreated, http.MethodPost, "/admin/v1/principals", `{"name":"dana","roles":[{"role":"operator"},{"role":"tenant_admin","tenant":"acme"}]}`)
	r := h.must(http.StatusCreated, http.MethodPost, "/admin/v1/principals/dana/tokens", `{"name":"ta","role":"tenant_admin","expires_in_seconds":600}`)
	narrow := r.json(t)["token"].(string)
	wantStatus(t, "narrowed token writes a tier", h.as(narrow, http.MethodPost, "/admin/v1/tiers", `{"name":"x"}`), http.StatusForbidden, "forbidden")
	for _, c := range []struct{ name, body, field string }{
		{"a wider role", `{"name":"up","role":"operator","expires_in_seconds":300}`, "role"},
		{"a longer life", `{"name":"long","expires_in_seconds":7776000}`, "expires_in_seconds"},
	} {
		r := h.as(narrow, http.MethodPost, "/admin/v1/me/tokens", c.body)
		wantStatus(t, c.name, r, http.StatusUnprocessableEntity, "validation_failed")
		if !slices.Contains(r.errorFields(t), c.field) {
			t.Fatalf("%s: fields %v lack %s", c.name, r.errorFields(t), c.field)
		}
	}
	r = h.as(narrow, http.MethodPost, "/admin/v1/me/tokens", `{"name":"same","expires_in_seconds":300}`)
	wantStatus(t, "a token as narrow and shorter", r, http.StatusCreated, "")
	if r.json(t)["role"] != "tenant_admin" {
		t.Fatalf("the new token is not narrowed: %s", r.body)
	}
	wantStatus(t, "the new token writes a tier", h.as(r.json(t)["token"].(string), http.MethodPost, "/admin/v1/tiers", `{"name":"x"}`),
		http.StatusForbidden, "forbidden")
}
