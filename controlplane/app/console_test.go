package app

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/portcullis-gw/portcullis/controlplane/admintest"
	"github.com/portcullis-gw/portcullis/controlplane/internal/console"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
)

// form posts values as a browser form would, without following a redirect.
func (s *session) form(path string, values url.Values) httpResult {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.base+path, strings.NewReader(values.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	client := *s.b.Client
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return httpResult{resp.StatusCode, resp.Header, string(b)}
}

// TestConsoleWithRoles: the console's pages for an admin, an auditor and a tenant
// admin signed in through the dev OIDC provider. The admin creates a tenant and a
// client (a bad tier shown beside its field), disables the client and sets an
// override, each visible through the admin API and in the change history as the
// admin; the auditor sees no write control and a forged form is refused by the
// API; the tenant admin sees only its tenant; a form without the session's CSRF
// token is refused; the signed out are sent to sign in; every page sends the strict
// CSP.
func TestConsoleWithRoles(t *testing.T) {
	const password = "pw-for-the-console"
	idp, tweak := withOIDC(t, password)
	a, cfg := startApp(t, tweak)
	base := "http://" + a.Addr()
	idp.AllowRedirect(base + "/auth/callback")
	admin := admintest.Admin(t, base, cfg.DataDir)
	for _, r := range []struct{ path, body string }{
		{"/tenants", `{"name":"demo"}`},
		{"/tenants", `{"name":"globex"}`},
		{"/tiers", `{"name":"default","requests_per_minute":60,"tokens_per_hour":100000,"max_concurrent_requests":5,"allowed_models":["gpt-4o-mini"]}`},
		{"/residency-rules", `{"residency":"eu","allowed_regions":["eu"]}`},
		{"/clients", `{"client_id":"demo-app","tenant":"demo","tier":"default","residency":"eu","enabled":true}`},
		{"/clients", `{"client_id":"globex-app","tenant":"globex","tier":"default","residency":"eu","enabled":true}`},
	} {
		if res := do(t, http.MethodPost, base+"/admin/v1"+r.path, admin, r.body); res.status != http.StatusCreated {
			t.Fatalf("seed %s: %d %s", r.path, res.status, res.body)
		}
	}

	// Signed out: sent to sign in, with the way back.
	plain := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := plain.Get(base + "/console/clients?q=demo")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/auth/login?return_to=%2Fconsole%2Fclients%3Fq%3Ddemo" {
		t.Fatalf("signed out: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}

	adm := signIn(t, base, "admin@demo.example", password)
	page := adm.do(http.MethodGet, "/console/clients", "", "")
	if page.status != http.StatusOK || page.header.Get("Content-Security-Policy") != console.ContentSecurityPolicy ||
		!strings.Contains(page.body, "demo-app") || !strings.Contains(page.body, "globex-app") || !strings.Contains(page.body, `href="/console/clients/new"`) {
		t.Fatalf("the admin's client list: %d %v %s", page.status, page.header, page.body)
	}
	if r := adm.do(http.MethodGet, "/console/clients?q=GLOB", "", ""); strings.Contains(r.body, "demo-app") || !strings.Contains(r.body, "globex-app") {
		t.Fatalf("search: %s", r.body)
	}
	if r := adm.do(http.MethodGet, "/console/static/htmx-2.0.11.min.js", "", ""); r.status != http.StatusOK ||
		!strings.Contains(r.header.Get("Content-Type"), "javascript") {
		t.Fatalf("htmx: %d %v", r.status, r.header)
	}

	if r := adm.form("/console/tenants", url.Values{"csrf": {adm.csrf}, "name": {"initech"}}); r.status != http.StatusSeeOther {
		t.Fatalf("create a tenant: %d %s", r.status, r.body)
	}
	bad := adm.form("/console/clients", url.Values{"csrf": {adm.csrf}, "client_id": {"initech-app"}, "tenant": {"initech"},
		"tier": {"gold"}, "residency": {"eu"}, "enabled": {"true"}})
	if bad.status != http.StatusUnprocessableEntity || !strings.Contains(bad.body, `id="tier-error"`) || !strings.Contains(bad.body, `value="initech-app"`) {
		t.Fatalf("a client with an unknown tier: %d %s", bad.status, bad.body)
	}
	ok := adm.form("/console/clients", url.Values{"csrf": {adm.csrf}, "client_id": {"initech-app"}, "tenant": {"initech"},
		"tier": {"default"}, "residency": {"eu"}, "enabled": {"true"}})
	if ok.status != http.StatusSeeOther || ok.header.Get("Location") != "/console/clients/initech-app?done=client-created" {
		t.Fatalf("create a client: %d %v %s", ok.status, ok.header, ok.body)
	}
	detail := adm.do(http.MethodGet, "/console/clients/initech-app", "", "")
	rev := between(detail.body, `name="revision" value="`, `"`)
	if !strings.Contains(detail.body, `id="disable"`) || rev == "" {
		t.Fatalf("the client's page: %s", detail.body)
	}
	if r := adm.form("/console/clients/initech-app/disable", url.Values{"csrf": {adm.csrf}, "revision": {rev}}); r.status != http.StatusSeeOther {
		t.Fatalf("disable: %d %s", r.status, r.body)
	}
	if r := do(t, http.MethodGet, base+"/admin/v1/clients/initech-app", admin, ""); !strings.Contains(r.body, `"enabled":false`) {
		t.Fatalf("the client after disabling in the console: %s", r.body)
	}
	if r := adm.form("/console/clients/initech-app/enable", url.Values{"csrf": {adm.csrf}, "revision": {rev}}); r.status != http.StatusPreconditionFailed ||
		!strings.Contains(r.body, "changed since this page was loaded") {
		t.Fatalf("enable with a stale revision: %d %s", r.status, r.body)
	}
	if r := adm.form("/console/clients/initech-app/override", url.Values{"csrf": {adm.csrf}, "requests_per_minute": {"ten"}, "for": {"900"}, "reason": {"x"}}); r.status != http.StatusUnprocessableEntity ||
		!strings.Contains(r.body, "must be a whole number") {
		t.Fatalf("an override of ten: %d %s", r.status, r.body)
	}
	if r := adm.form("/console/clients/initech-app/override", url.Values{"csrf": {adm.csrf}, "requests_per_minute": {"5"}, "for": {"900"}, "reason": {"launch test"}}); r.status != http.StatusSeeOther {
		t.Fatalf("set an override: %d %s", r.status, r.body)
	}
	if r := do(t, http.MethodGet, base+"/admin/v1/clients/initech-app/limit-override", admin, ""); !strings.Contains(r.body, `"requests_per_minute":5`) ||
		!strings.Contains(r.body, `"set_by":"admin@demo.example"`) {
		t.Fatalf("the override set in the console: %s", r.body)
	}
	if r := do(t, http.MethodGet, base+"/admin/v1/changes?resource=clients", admin, ""); !strings.Contains(r.body, `"principal":"admin@demo.example","principal_kind":"person"`) {
		t.Fatalf("the change history of the console's writes: %s", r.body)
	}
	changes := adm.do(http.MethodGet, "/console/changes?resource=clients", "", "")
	if changes.status != http.StatusOK || !strings.Contains(changes.body, `<th scope="row">enabled</th><td class="before">true</td><td class="after">false</td>`) ||
		!strings.Contains(changes.body, "session:ses_") || strings.Contains(changes.body, "update limit_overrides") {
		t.Fatalf("the change history page: %d %s", changes.status, changes.body)
	}
	if r := adm.do(http.MethodGet, "/console/changes?actor=admin@demo.example", "", ""); !strings.Contains(r.body, "initech") || strings.Contains(r.body, "demo-app") {
		t.Fatalf("the history by actor: %s", r.body)
	}
	if r := adm.form("/console/clients/initech-app/disable", url.Values{"revision": {rev}}); r.status != http.StatusForbidden || !strings.Contains(r.body, "CSRF") {
		t.Fatalf("a form without the CSRF token: %d %s", r.status, r.body)
	}

	// Alerts: the admin acknowledges one; keys: file keys listed, rotation needs a
	// reason and a tick (and then Vault, which this control plane has not).
	st, err := store.Open(context.Background(), cfg.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	alert, _, err := st.RaiseAlert(context.Background(), store.Alert{Kind: "token_spike", Severity: "warning", ClientID: "demo-app",
		TenantID: "demo", Rule: "spike", DedupKey: "console-test", Message: "tokens 10x the baseline", Details: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	alerts := adm.do(http.MethodGet, "/console/alerts", "", "")
	ackID := fmt.Sprintf("ack-%d", alert.ID)
	if !strings.Contains(alerts.body, "tokens 10x the baseline") || !strings.Contains(alerts.body, ackID) {
		t.Fatalf("the alerts page: %s", alerts.body)
	}
	if r := adm.form(fmt.Sprintf("/console/alerts/%d/ack", alert.ID), url.Values{"csrf": {adm.csrf}}); r.status != http.StatusSeeOther {
		t.Fatalf("ack: %d %s", r.status, r.body)
	}
	if r := adm.do(http.MethodGet, "/console/alerts?state=all", "", ""); !strings.Contains(r.body, "acknowledged by admin@demo.example") {
		t.Fatalf("the acknowledged alert: %s", r.body)
	}
	if r := adm.form("/console/keys/rotate", url.Values{"csrf": {adm.csrf}, "provider": {"openai"}}); r.status != http.StatusUnprocessableEntity ||
		!strings.Contains(r.body, "tick the box") || !strings.Contains(r.body, "say why") {
		t.Fatalf("a rotation without reason and confirmation: %d %s", r.status, r.body)
	}

	aud := signIn(t, base, "auditor@demo.example", password)
	if r := aud.do(http.MethodGet, "/console/alerts?state=all", "", ""); r.status != http.StatusOK || strings.Contains(r.body, `action="/console/alerts/`) {
		t.Fatalf("the auditor's alerts: %d %s", r.status, r.body)
	}
	if r := aud.do(http.MethodGet, "/console/keys", "", ""); r.status != http.StatusOK || strings.Contains(r.body, `id="rotate"`) || strings.Contains(r.body, `id="revoke"`) {
		t.Fatalf("the auditor's keys: %d %s", r.status, r.body)
	}
	if r := aud.form("/console/keys/revoke", url.Values{"csrf": {aud.csrf}, "provider": {"openai"}, "reason": {"x"}, "confirm": {"revoke"}}); r.status != http.StatusForbidden {
		t.Fatalf("the auditor's forged revoke: %d %s", r.status, r.body)
	}
	for _, path := range []string{"/console/clients", "/console/clients/demo-app", "/console/tenants"} {
		r := aud.do(http.MethodGet, path, "", "")
		if r.status != http.StatusOK || strings.Contains(r.body, "<form method=\"post\" action=\"/console/") || strings.Contains(r.body, "/console/clients/new") {
			t.Fatalf("the auditor's %s shows a write control: %d %s", path, r.status, r.body)
		}
	}
	if r := aud.form("/console/clients/demo-app/disable", url.Values{"csrf": {aud.csrf}, "revision": {"1"}}); r.status != http.StatusForbidden {
		t.Fatalf("the auditor's forged disable: %d %s", r.status, r.body)
	}
	if r := do(t, http.MethodGet, base+"/admin/v1/clients/demo-app", admin, ""); !strings.Contains(r.body, `"enabled":true`) {
		t.Fatalf("demo-app after the auditor's forged disable: %s", r.body)
	}

	// The auditor exports: the form sends the browser on to the admin API, which
	// streams the download with the session; bad times are refused beside the fields.
	if r := aud.do(http.MethodGet, "/console/audit", "", ""); r.status != http.StatusOK || !strings.Contains(r.body, `<option value="eu"`) {
		t.Fatalf("the auditor's audit page: %d %s", r.status, r.body)
	}
	if r := aud.do(http.MethodGet, "/console/audit/export?region=eu&from=2026-01-02T10:00&to=2026-01-01T10:00", "", ""); r.status != http.StatusUnprocessableEntity ||
		!strings.Contains(r.body, `id="to-error"`) {
		t.Fatalf("an export ending before it starts: %d %s", r.status, r.body)
	}
	noFollow := *aud.b.Client
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err = noFollow.Get(base + "/console/audit/export?region=eu&from=2026-01-01T10:00&to=2026-01-02T10:00&format=csv")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || loc != "/admin/v1/audit/export?format=csv&from=2026-01-01T10%3A00%3A00Z&region=eu&to=2026-01-02T10%3A00%3A00Z" {
		t.Fatalf("the export form: %d %s", resp.StatusCode, loc)
	}
	if r := aud.do(http.MethodGet, loc, "", ""); r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Disposition"), "attachment") {
		t.Fatalf("the export with the auditor's session: %d %v %.200s", r.status, r.header, r.body)
	}

	ta := signIn(t, base, "tenant-admin@demo.example", password)
	if r := ta.do(http.MethodGet, "/console/audit", "", ""); r.status != http.StatusForbidden || strings.Contains(ta.do(http.MethodGet, "/console/", "", "").body, `href="/console/audit"`) {
		t.Fatalf("the tenant admin's audit page: %d", r.status)
	}
	list := ta.do(http.MethodGet, "/console/clients", "", "")
	if !strings.Contains(list.body, "demo-app") || strings.Contains(list.body, "globex") || strings.Contains(list.body, "initech") {
		t.Fatalf("the tenant admin's clients: %s", list.body)
	}
	if r := ta.do(http.MethodGet, "/console/clients/globex-app", "", ""); r.status != http.StatusNotFound {
		t.Fatalf("the tenant admin opens another tenant's client: %d", r.status)
	}
	if r := ta.form("/console/clients/globex-app/disable", url.Values{"csrf": {ta.csrf}, "revision": {"1"}}); r.status != http.StatusNotFound {
		t.Fatalf("the tenant admin's forged disable of another tenant's client: %d %s", r.status, r.body)
	}
	if r := ta.do(http.MethodGet, "/console/tenants", "", ""); !strings.Contains(r.body, "<td>demo</td>") || strings.Contains(r.body, "globex") {
		t.Fatalf("the tenant admin's tenants: %s", r.body)
	}
}
