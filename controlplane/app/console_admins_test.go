package app

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/portcullis-gw/portcullis/controlplane/admintest"
	"github.com/portcullis-gw/portcullis/controlplane/internal/console"
)

// createdToken is the token and its id on the page that answers a token's
// creation in the console, or "" when the page shows none. Failures print the
// page's status, never its body: the body holds the token.
func createdToken(t *testing.T, r httpResult) (token, id string) {
	t.Helper()
	if r.status != http.StatusCreated || !strings.Contains(r.body, `id="new-token"`) || !strings.Contains(r.body, "it will not be shown again") {
		t.Fatalf("the page of a created token: %d, new-token section %t", r.status, strings.Contains(r.body, `id="new-token"`))
	}
	token = between(r.body, `id="token-value" class="token-value" readonly value="`, `"`)
	id = between(r.body, "Id <code>", "</code>")
	if !strings.HasPrefix(token, "pct_") || !strings.HasPrefix(id, "tok_") || r.header.Get("Location") != "" {
		t.Fatalf("the page of a created token: no pct_ token or tok_ id shown, or a redirect (%q)", r.header.Get("Location"))
	}
	return token, id
}

// TestConsoleAdmins: the Admins pages for an admin, an auditor and a tenant admin
// signed in through the dev OIDC provider. The admin lists and filters the
// principals, creates a service account with roles (a bad role and an unknown
// tenant shown beside their fields, a taken name beside the name), sets its roles,
// creates an API token shown once that then works against the admin API, revokes
// it (401 after), and disables and enables the account (a stale revision refused);
// the auditor sees no write control and its forged forms are refused; the tenant
// admin may not open the Admins pages; everyone manages their own tokens; a form
// without the session's CSRF token is refused.
func TestConsoleAdmins(t *testing.T) {
	const password = "pw-for-the-admins-pages"
	idp, tweak := withOIDC(t, password)
	a, cfg := startApp(t, tweak)
	base := "http://" + a.Addr()
	idp.AllowRedirect(base + "/auth/callback")
	admin := admintest.Admin(t, base, cfg.DataDir)
	if r := do(t, http.MethodPost, base+"/admin/v1/tenants", admin, `{"name":"demo"}`); r.status != http.StatusCreated {
		t.Fatalf("seed tenant: %d %s", r.status, r.body)
	}
	whoami := func(token string) httpResult { return do(t, http.MethodGet, base+"/admin/v1/whoami", token, "") }

	adm := signIn(t, base, "admin@demo.example", password)
	list := adm.do(http.MethodGet, "/console/admins", "", "")
	if list.status != http.StatusOK || list.header.Get("Content-Security-Policy") != console.ContentSecurityPolicy ||
		!strings.Contains(list.body, `id="principal-table"`) || !strings.Contains(list.body, `href="/console/admins/admin@demo.example"`) ||
		!strings.Contains(list.body, `href="/console/admins/test-admin"`) || !strings.Contains(list.body, `id="create-service-account"`) ||
		!strings.Contains(list.body, `<a href="/console/admins" aria-current="page">Admins</a>`) {
		t.Fatalf("the admin's principal list: %d %v %s", list.status, list.header, list.body)
	}

	// Creating a service account: the API's field errors beside the fields, nothing
	// made; then made, with its roles.
	for _, c := range []struct {
		name    string
		values  url.Values
		status  int
		errorID string
		says    string
	}{
		{"a bad role", url.Values{"name": {"ci-bot"}, "roles": {"operator", "superuser"}}, http.StatusUnprocessableEntity, `id="roles-error"`, `&#34;superuser&#34;: must be one of`},
		{"an unknown tenant", url.Values{"name": {"ci-bot"}, "roles": {"operator"}, "tenants": {"nowhere"}}, http.StatusUnprocessableEntity, `id="tenants-error"`, "names a tenant that does not exist"},
		{"a bad name", url.Values{"name": {"CI Bot"}, "roles": {"operator"}}, http.StatusUnprocessableEntity, `id="name-error"`, "lowercase letters"},
	} {
		c.values.Set("csrf", adm.csrf)
		r := adm.form("/console/admins", c.values)
		if r.status != c.status || !strings.Contains(r.body, c.errorID) || !strings.Contains(r.body, c.says) ||
			!strings.Contains(r.body, `value="`+c.values.Get("name")+`"`) || !strings.Contains(r.body, `id="role-operator" checked`) {
			t.Fatalf("create a service account with %s: %d %s", c.name, r.status, r.body)
		}
	}
	if r := do(t, http.MethodGet, base+"/admin/v1/principals/ci-bot", admin, ""); r.status != http.StatusNotFound {
		t.Fatalf("ci-bot after refused creates: %d %s", r.status, r.body)
	}
	created := adm.form("/console/admins", url.Values{"csrf": {adm.csrf}, "name": {"ci-bot"}, "roles": {"operator"}, "tenants": {"demo"}})
	if created.status != http.StatusSeeOther || created.header.Get("Location") != "/console/admins/ci-bot?done=principal-created" {
		t.Fatalf("create a service account: %d %v %s", created.status, created.header, created.body)
	}
	if r := do(t, http.MethodGet, base+"/admin/v1/principals/ci-bot", admin, ""); !strings.Contains(r.body, `"kind":"service"`) ||
		!strings.Contains(r.body, `{"role":"operator","source":"manual"}`) || !strings.Contains(r.body, `{"role":"tenant_admin","tenant":"demo","source":"manual"}`) {
		t.Fatalf("ci-bot as created in the console: %s", r.body)
	}
	if r := adm.form("/console/admins", url.Values{"csrf": {adm.csrf}, "name": {"ci-bot"}}); r.status != http.StatusConflict || !strings.Contains(r.body, `id="name-error"`) {
		t.Fatalf("a service account whose name is taken: %d %s", r.status, r.body)
	}
	for _, c := range []struct{ query, has, hasNot string }{
		{"?kind=service", `href="/console/admins/ci-bot"`, `href="/console/admins/admin@demo.example"`},
		{"?kind=person", `href="/console/admins/admin@demo.example"`, `href="/console/admins/ci-bot"`},
		{"?q=BOT", `href="/console/admins/ci-bot"`, `href="/console/admins/test-admin"`},
	} {
		if r := adm.do(http.MethodGet, "/console/admins"+c.query, "", ""); r.status != http.StatusOK || !strings.Contains(r.body, c.has) || strings.Contains(r.body, c.hasNot) {
			t.Fatalf("the list %s: %d %s", c.query, r.status, r.body)
		}
	}

	// Its page: the roles form shows the manual bindings; setting roles reports a bad
	// tenant beside the field, then replaces them.
	detail := adm.do(http.MethodGet, "/console/admins/ci-bot?done=principal-created", "", "")
	if detail.status != http.StatusOK || !strings.Contains(detail.body, `data-done="principal-created"`) || !strings.Contains(detail.body, `id="role-operator" checked`) ||
		strings.Contains(detail.body, `id="role-auditor" checked`) || !strings.Contains(detail.body, `id="tenants" name="tenants" value="demo"`) ||
		!strings.Contains(detail.body, `id="set-roles"`) || !strings.Contains(detail.body, `id="create-token"`) || !strings.Contains(detail.body, `id="disable-principal"`) {
		t.Fatalf("ci-bot's page: %d %s", detail.status, detail.body)
	}
	if r := adm.form("/console/admins/ci-bot/roles", url.Values{"csrf": {adm.csrf}, "roles": {"auditor"}, "tenants": {"demo, Bad Tenant"}}); r.status != http.StatusUnprocessableEntity ||
		!strings.Contains(r.body, `id="tenants-error"`) || !strings.Contains(r.body, `&#34;Bad&#34;: names the tenant`) || !strings.Contains(r.body, `id="role-auditor" checked`) {
		t.Fatalf("set roles with a bad tenant: %d %s", r.status, r.body)
	}
	if r := adm.form("/console/admins/ci-bot/roles", url.Values{"csrf": {adm.csrf}, "roles": {"auditor"}}); r.status != http.StatusSeeOther ||
		r.header.Get("Location") != "/console/admins/ci-bot?done=roles-set" {
		t.Fatalf("set roles: %d %v %s", r.status, r.header, r.body)
	}
	if r := do(t, http.MethodGet, base+"/admin/v1/principals/ci-bot", admin, ""); !strings.Contains(r.body, `"roles":[{"role":"auditor","source":"manual"}]`) {
		t.Fatalf("ci-bot's roles set in the console: %s", r.body)
	}

	// Its tokens: one narrowed to a role it lacks or with no expiry is refused beside
	// the field; one made is shown on the answer only, works, and stops when revoked.
	for _, c := range []struct{ name, role, expiry, errorID string }{
		{"a role it lacks", "operator", "3600", `id="token-role-error"`},
		{"no expiry", "", "forever", `id="token-expiry-error"`},
		{"no name", "", "3600", `id="token-name-error"`},
	} {
		name := "deploy"
		if c.name == "no name" {
			name = ""
		}
		r := adm.form("/console/admins/ci-bot/tokens", url.Values{"csrf": {adm.csrf}, "name": {name}, "expires_in_seconds": {c.expiry}, "role": {c.role}})
		if r.status != http.StatusUnprocessableEntity || !strings.Contains(r.body, c.errorID) || strings.Contains(r.body, `id="token-value"`) {
			t.Fatalf("a token with %s: %d %s", c.name, r.status, r.body)
		}
	}
	token, tokenID := createdToken(t, adm.form("/console/admins/ci-bot/tokens",
		url.Values{"csrf": {adm.csrf}, "name": {"deploy"}, "expires_in_seconds": {"3600"}, "role": {"auditor"}}))
	if r := whoami(token); r.status != http.StatusOK || !strings.Contains(r.body, `"principal":"ci-bot"`) {
		t.Fatalf("whoami with the console's token: %d %s", r.status, r.body)
	}
	detail = adm.do(http.MethodGet, "/console/admins/ci-bot", "", "")
	if strings.Contains(detail.body, token) {
		t.Fatal("ci-bot's page shows the token again")
	}
	if !strings.Contains(detail.body, `id="token-`+tokenID+`"`) || !strings.Contains(detail.body, `id="revoke-`+tokenID+`"`) {
		t.Fatalf("ci-bot's page lists no token %s to revoke: %s", tokenID, detail.body)
	}
	// A second token outlives the auditor's forged revoke below.
	spare, _ := createdToken(t, adm.form("/console/admins/ci-bot/tokens", url.Values{"csrf": {adm.csrf}, "name": {"spare"}, "expires_in_seconds": {"86400"}}))
	if r := adm.form("/console/admins/ci-bot/tokens/"+tokenID+"/revoke", url.Values{"csrf": {adm.csrf}}); r.status != http.StatusSeeOther ||
		r.header.Get("Location") != "/console/admins/ci-bot?done=token-revoked" {
		t.Fatalf("revoke: %d %v %s", r.status, r.header, r.body)
	}
	if r := whoami(token); r.status != http.StatusUnauthorized {
		t.Fatalf("whoami with the revoked token: %d %s", r.status, r.body)
	}
	if r := adm.do(http.MethodGet, "/console/admins/ci-bot", "", ""); strings.Contains(r.body, `id="revoke-`+tokenID+`"`) || !strings.Contains(r.body, `<span class="badge off">revoked</span>`) {
		t.Fatalf("ci-bot's page after the revoke: %s", r.body)
	}

	// Disable (its tokens stop), enable, and a stale revision refused.
	rev := between(adm.do(http.MethodGet, "/console/admins/ci-bot", "", "").body, `name="revision" value="`, `"`)
	if r := adm.form("/console/admins/ci-bot/disable", url.Values{"csrf": {adm.csrf}, "revision": {rev}}); r.status != http.StatusSeeOther ||
		r.header.Get("Location") != "/console/admins/ci-bot?done=principal-disabled" {
		t.Fatalf("disable: %d %v %s", r.status, r.header, r.body)
	}
	if r := whoami(spare); r.status != http.StatusUnauthorized {
		t.Fatalf("whoami with a disabled principal's token: %d %s", r.status, r.body)
	}
	if r := adm.form("/console/admins/ci-bot/enable", url.Values{"csrf": {adm.csrf}, "revision": {rev}}); r.status != http.StatusPreconditionFailed ||
		!strings.Contains(r.body, "changed since this page was loaded") || !strings.Contains(r.body, `id="enable-principal"`) {
		t.Fatalf("enable with a stale revision: %d %s", r.status, r.body)
	}
	rev = between(adm.do(http.MethodGet, "/console/admins/ci-bot", "", "").body, `name="revision" value="`, `"`)
	if r := adm.form("/console/admins/ci-bot/enable", url.Values{"csrf": {adm.csrf}, "revision": {rev}}); r.status != http.StatusSeeOther {
		t.Fatalf("enable: %d %s", r.status, r.body)
	}
	if r := whoami(spare); r.status != http.StatusOK {
		t.Fatalf("whoami with the re-enabled principal's token: %d %s", r.status, r.body)
	}

	// Without the session's CSRF token, nothing is done.
	for _, path := range []string{"/console/admins", "/console/admins/ci-bot/roles", "/console/admins/ci-bot/tokens", "/console/me/tokens"} {
		r := adm.form(path, url.Values{"name": {"no-csrf"}, "roles": {"admin"}, "expires_in_seconds": {"3600"}})
		if r.status != http.StatusForbidden || !strings.Contains(r.body, "CSRF") || strings.Contains(r.body, `id="token-value"`) {
			t.Fatalf("%s without the CSRF token: %d", path, r.status)
		}
	}
	if r := do(t, http.MethodGet, base+"/admin/v1/principals/ci-bot", admin, ""); !strings.Contains(r.body, `"roles":[{"role":"auditor","source":"manual"}]`) {
		t.Fatalf("ci-bot after forms without CSRF: %s", r.body)
	}

	// The auditor reads, without a write control; forged forms are refused.
	aud := signIn(t, base, "auditor@demo.example", password)
	if r := aud.do(http.MethodGet, "/console/admins", "", ""); r.status != http.StatusOK || !strings.Contains(r.body, `href="/console/admins/ci-bot"`) ||
		strings.Contains(r.body, `method="post" action="/console/admins"`) || strings.Contains(r.body, `id="create-service-account"`) {
		t.Fatalf("the auditor's principal list: %d %s", r.status, r.body)
	}
	r := aud.do(http.MethodGet, "/console/admins/ci-bot", "", "")
	if r.status != http.StatusOK || !strings.Contains(r.body, `id="token-table"`) || strings.Contains(r.body, `method="post"`+` action="/console/admins`) ||
		strings.Contains(r.body, `id="create-token"`) || strings.Contains(r.body, `id="set-roles"`) || strings.Contains(r.body, `id="disable-principal"`) || strings.Contains(r.body, `id="revoke-`) {
		t.Fatalf("the auditor's view of ci-bot shows a write control: %d %s", r.status, r.body)
	}
	for _, f := range []struct {
		path   string
		values url.Values
	}{
		{"/console/admins", url.Values{"name": {"forged"}, "roles": {"admin"}}},
		{"/console/admins/ci-bot/roles", url.Values{"roles": {"admin"}}},
		{"/console/admins/ci-bot/tokens", url.Values{"name": {"forged"}, "expires_in_seconds": {"3600"}}},
		{"/console/admins/ci-bot/disable", url.Values{"revision": {rev}}},
	} {
		f.values.Set("csrf", aud.csrf)
		if r := aud.form(f.path, f.values); r.status != http.StatusForbidden || strings.Contains(r.body, `id="token-value"`) {
			t.Fatalf("the auditor's forged %s: %d", f.path, r.status)
		}
	}
	if r := do(t, http.MethodGet, base+"/admin/v1/principals/ci-bot", admin, ""); !strings.Contains(r.body, `"roles":[{"role":"auditor","source":"manual"}]`) ||
		!strings.Contains(r.body, `"disabled":false`) {
		t.Fatalf("ci-bot after the auditor's forged forms: %s", r.body)
	}
	if r := do(t, http.MethodGet, base+"/admin/v1/principals/forged", admin, ""); r.status != http.StatusNotFound {
		t.Fatalf("the auditor's forged service account: %d", r.status)
	}
	if r := do(t, http.MethodGet, base+"/admin/v1/principals/ci-bot/tokens", admin, ""); strings.Contains(r.body, `"name":"forged"`) {
		t.Fatalf("the auditor's forged token: %s", r.body)
	}
	spareID := between(do(t, http.MethodGet, base+"/admin/v1/principals/ci-bot/tokens", admin, "").body, `"id":"`, `"`)
	if r := aud.form("/console/admins/ci-bot/tokens/"+spareID+"/revoke", url.Values{"csrf": {aud.csrf}}); r.status != http.StatusForbidden {
		t.Fatalf("the auditor's forged revoke: %d %s", r.status, r.body)
	}
	if r := whoami(spare); r.status != http.StatusOK {
		t.Fatalf("ci-bot's token after the auditor's forged revoke: %d", r.status)
	}

	// The tenant admin may not open the Admins pages, nor forge their forms.
	ta := signIn(t, base, "tenant-admin@demo.example", password)
	for _, path := range []string{"/console/admins", "/console/admins/ci-bot"} {
		if r := ta.do(http.MethodGet, path, "", ""); r.status != http.StatusForbidden || strings.Contains(r.body, "ci-bot") {
			t.Fatalf("the tenant admin's %s: %d %s", path, r.status, r.body)
		}
	}
	if r := ta.do(http.MethodGet, "/console/", "", ""); strings.Contains(r.body, `href="/console/admins"`) {
		t.Fatalf("the tenant admin's navigation offers Admins: %s", r.body)
	}
	if r := ta.form("/console/admins/ci-bot/roles", url.Values{"csrf": {ta.csrf}, "roles": {"admin"}}); r.status != http.StatusForbidden {
		t.Fatalf("the tenant admin's forged roles: %d %s", r.status, r.body)
	}

	// Everyone signed in manages their own tokens.
	for _, s := range []struct {
		who  string
		sess *session
	}{{"auditor@demo.example", aud}, {"tenant-admin@demo.example", ta}} {
		page := s.sess.do(http.MethodGet, "/console/me/tokens", "", "")
		if page.status != http.StatusOK || !strings.Contains(page.body, `id="create-token"`) || !strings.Contains(page.body, "<h1>Your API tokens</h1>") ||
			strings.Contains(page.body, `id="set-roles"`) {
			t.Fatalf("%s's own tokens: %d %s", s.who, page.status, page.body)
		}
		mine, id := createdToken(t, s.sess.form("/console/me/tokens", url.Values{"csrf": {s.sess.csrf}, "name": {"laptop"}, "expires_in_seconds": {"3600"}}))
		if r := whoami(mine); r.status != http.StatusOK || !strings.Contains(r.body, `"principal":"`+s.who+`"`) {
			t.Fatalf("whoami with %s's own token: %d %s", s.who, r.status, r.body)
		}
		if r := s.sess.form("/console/me/tokens/"+id+"/revoke", url.Values{"csrf": {s.sess.csrf}}); r.status != http.StatusSeeOther ||
			r.header.Get("Location") != "/console/me/tokens?done=token-revoked" {
			t.Fatalf("%s revokes their own token: %d %v %s", s.who, r.status, r.header, r.body)
		}
		if r := whoami(mine); r.status != http.StatusUnauthorized {
			t.Fatalf("whoami with %s's revoked own token: %d", s.who, r.status)
		}
	}
	// Another principal's token is not one's own.
	if r := aud.form("/console/me/tokens/"+spareID+"/revoke", url.Values{"csrf": {aud.csrf}}); r.status != http.StatusNotFound {
		t.Fatalf("the auditor revokes ci-bot's token as their own: %d %s", r.status, r.body)
	}
	if r := whoami(spare); r.status != http.StatusOK {
		t.Fatalf("ci-bot's token after the auditor's try: %d", r.status)
	}
}
