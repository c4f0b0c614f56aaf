package app

import (
	"encoding/json"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/portcullis-gw/portcullis/controlplane/admintest"
)

// TestConsoleTiers: an admin changes a tier's requests per minute in the console;
// the preview shows the change before and after and the clients on the tier, and
// changes nothing; saving writes it through the admin API, into the change
// history as the admin. A form based on an old revision is refused (412) with the
// tier as it is now; bad values are shown beside their fields, whether the console
// or the API finds them; an unchanged form previews as no change; the admin creates
// a tier and sets a guardrail. The auditor sees no edit control and its forged
// forms are refused; the tenant admin, without tiers:read, is refused the pages.
func TestConsoleTiers(t *testing.T) {
	base, admin, sign := consoleWithSeed(t,
		`/tiers`, `{"name":"standard","requests_per_minute":60,"tokens_per_hour":100000,"max_concurrent_requests":5,"allowed_models":["gpt-4o-mini"]}`,
		`/tiers`, `{"name":"premium","requests_per_minute":600,"tokens_per_hour":1000000,"max_concurrent_requests":50,"allowed_models":["gpt-4o"]}`,
		`/clients`, `{"client_id":"demo-app","tenant":"demo","tier":"standard","residency":"eu","enabled":true}`,
		`/clients`, `{"client_id":"demo-batch","tenant":"demo","tier":"standard","residency":"eu","enabled":true}`,
		`/clients`, `{"client_id":"demo-vip","tenant":"demo","tier":"premium","residency":"eu","enabled":true}`,
	)
	tierRPM := func() int64 {
		t.Helper()
		res := do(t, http.MethodGet, base+"/admin/v1/tiers/standard", admin, "")
		var tier struct {
			RPM int64 `json:"requests_per_minute"`
		}
		if res.status != http.StatusOK || json.Unmarshal([]byte(res.body), &tier) != nil {
			t.Fatalf("GET the tier: %d %s", res.status, res.body)
		}
		return tier.RPM
	}

	adm := sign("admin@demo.example")
	list := adm.do(http.MethodGet, "/console/tiers", "", "")
	if list.status != http.StatusOK || !strings.Contains(list.body, `<tr id="tier-standard"><td><a href="/console/tiers/standard">standard</a></td><td>60</td><td>100000</td><td>5</td>`) ||
		!strings.Contains(list.body, `id="tier-premium"`) || !strings.Contains(list.body, `id="new-tier"`) {
		t.Fatalf("the admin's tier list: %d %s", list.status, list.body)
	}
	if r := adm.do(http.MethodGet, "/console/tiers?q=prem", "", ""); !strings.Contains(r.body, `id="tier-premium"`) || strings.Contains(r.body, `id="tier-standard"`) {
		t.Fatalf("search: %s", r.body)
	}

	edit := adm.do(http.MethodGet, "/console/tiers/standard", "", "")
	if edit.status != http.StatusOK || !strings.Contains(edit.body, `id="tier-form"`) || !strings.Contains(edit.body, `<dd id="clients">2</dd>`) {
		t.Fatalf("the tier's page: %d %s", edit.status, edit.body)
	}
	form := formOf(t, edit.body, "tier-form")
	rev := form.Get("revision")

	// The form as loaded changes nothing.
	if r := adm.form("/console/tiers/standard/preview", form); r.status != http.StatusOK || !strings.Contains(r.body, `id="no-changes"`) ||
		strings.Contains(r.body, `id="save"`) {
		t.Fatalf("the preview of an unchanged form: %d %s", r.status, r.body)
	}

	form.Set("requests_per_minute", "120")
	preview := adm.form("/console/tiers/standard/preview", form)
	if preview.status != http.StatusOK ||
		!strings.Contains(preview.body, `<tr id="diff-requests_per_minute"><th scope="row"><code>requests_per_minute</code></th><td class="before">60</td><td class="after">120</td></tr>`) ||
		strings.Count(preview.body, `<tr id="diff-`) != 1 || !strings.Contains(preview.body, `<strong>2</strong> client(s) on this tier`) ||
		!strings.Contains(preview.body, `id="save"`) {
		t.Fatalf("the preview: %d %s", preview.status, preview.body)
	}
	if n := tierRPM(); n != 60 {
		t.Fatalf("the preview changed the tier: requests_per_minute %d", n)
	}
	save := formOf(t, preview.body, "save-form")
	if save.Get("revision") != rev || save.Get("requests_per_minute") != "120" {
		t.Fatalf("the save form: %v", save)
	}
	if r := adm.form("/console/tiers/standard", save); r.status != http.StatusSeeOther || r.header.Get("Location") != "/console/tiers/standard?done=tier-saved" {
		t.Fatalf("save: %d %v %s", r.status, r.header, r.body)
	}
	if n := tierRPM(); n != 120 {
		t.Fatalf("after saving: requests_per_minute %d", n)
	}
	if r := adm.do(http.MethodGet, "/console/tiers/standard?done=tier-saved", "", ""); !strings.Contains(r.body, `data-done="tier-saved"`) ||
		!strings.Contains(r.body, `<dd id="current-rpm">120</dd>`) {
		t.Fatalf("the tier after saving: %s", r.body)
	}
	if !tierChanged(t, base, admin, "admin@demo.example", 60, 120) {
		t.Fatal("the change history has no update of standard from 60 to 120 requests per minute by the admin")
	}

	// A save based on the old revision, after another change: refused, with the tier
	// as it is now and the form keeping its values at the current revision.
	patchAnyRevision(t, base+"/admin/v1/tiers/standard", admin, `{"requests_per_minute":90}`)
	save.Set("requests_per_minute", "150")
	stale := adm.form("/console/tiers/standard", save)
	if stale.status != http.StatusPreconditionFailed || !strings.Contains(stale.body, "changed since you loaded it") ||
		!strings.Contains(stale.body, `<dd id="current-rpm">90</dd>`) || formOf(t, stale.body, "tier-form").Get("requests_per_minute") != "150" ||
		formOf(t, stale.body, "tier-form").Get("revision") == rev {
		t.Fatalf("a save of an old revision: %d %s", stale.status, stale.body)
	}
	if n := tierRPM(); n != 90 {
		t.Fatalf("after the stale save: requests_per_minute %d", n)
	}
	if r := adm.form("/console/tiers/standard/preview", save); r.status != http.StatusPreconditionFailed || !strings.Contains(r.body, "changed since you loaded it") {
		t.Fatalf("a preview of an old revision: %d %s", r.status, r.body)
	}

	// Bad values beside their fields: the console's checks in the preview, the API's
	// on saving.
	form = formOf(t, adm.do(http.MethodGet, "/console/tiers/standard", "", "").body, "tier-form")
	form.Set("requests_per_minute", "-5")
	form.Set("allowed_operations", "completion, fine_tuning")
	bad := adm.form("/console/tiers/standard/preview", form)
	if bad.status != http.StatusUnprocessableEntity || !strings.Contains(bad.body, `<p class="error" id="requests_per_minute-error">must be a positive integer</p>`) ||
		!strings.Contains(bad.body, `id="allowed_operations-error">unknown operations: fine_tuning`) {
		t.Fatalf("a preview of bad values: %d %s", bad.status, bad.body)
	}
	form = formOf(t, adm.do(http.MethodGet, "/console/tiers/standard", "", "").body, "tier-form")
	form.Set("allowed_models", "gpt-4o-mini\nGPT 4")
	bad = adm.form("/console/tiers/standard", form)
	if bad.status != http.StatusUnprocessableEntity || !strings.Contains(bad.body, `id="allowed_models-error">model names are not valid`) ||
		!strings.Contains(bad.body, `GPT 4</textarea>`) {
		t.Fatalf("a save the API refuses: %d %s", bad.status, bad.body)
	}

	// A guardrail: previewed as its family's change, saved through the API.
	form.Set("allowed_models", "gpt-4o-mini")
	form.Set("guardrails.pii.input", "redact")
	preview = adm.form("/console/tiers/standard/preview", form)
	if !strings.Contains(preview.body, `<tr id="diff-guardrails.pii">`) || strings.Count(preview.body, `<tr id="diff-`) != 1 {
		t.Fatalf("the preview of a guardrail: %d %s", preview.status, preview.body)
	}
	if r := adm.form("/console/tiers/standard", formOf(t, preview.body, "save-form")); r.status != http.StatusSeeOther {
		t.Fatalf("save a guardrail: %d %s", r.status, r.body)
	}
	if r := do(t, http.MethodGet, base+"/admin/v1/tiers/standard", admin, ""); !strings.Contains(r.body, `"pii":{"input":"redact"}`) ||
		!strings.Contains(r.body, `"requests_per_minute":90`) {
		t.Fatalf("the tier after saving a guardrail: %s", r.body)
	}

	// A new tier.
	if r := adm.form("/console/tiers", url.Values{"csrf": {adm.csrf}, "name": {"Bad Name"}, "requests_per_minute": {"10"},
		"tokens_per_hour": {"1000"}, "max_concurrent_requests": {"1"}}); r.status != http.StatusUnprocessableEntity || !strings.Contains(r.body, `id="name-error"`) {
		t.Fatalf("a tier with a bad name: %d %s", r.status, r.body)
	}
	created := adm.form("/console/tiers", url.Values{"csrf": {adm.csrf}, "name": {"gold"}, "requests_per_minute": {"10"},
		"tokens_per_hour": {"1000"}, "max_concurrent_requests": {"1"}, "allowed_models": {"gpt-4o, gpt-4o-mini"}, "allowed_operations": {"chat"}})
	if created.status != http.StatusSeeOther || created.header.Get("Location") != "/console/tiers/gold?done=tier-created" {
		t.Fatalf("create a tier: %d %v %s", created.status, created.header, created.body)
	}
	if r := do(t, http.MethodGet, base+"/admin/v1/tiers/gold", admin, ""); !strings.Contains(r.body, `"allowed_models":["gpt-4o","gpt-4o-mini"],"allowed_operations":["chat"]`) {
		t.Fatalf("the tier created in the console: %s", r.body)
	}

	aud := sign("auditor@demo.example")
	for _, path := range []string{"/console/tiers", "/console/tiers/standard"} {
		r := aud.do(http.MethodGet, path, "", "")
		if r.status != http.StatusOK || !strings.Contains(r.body, "standard") || strings.Contains(r.body, `method="post" action="/console/tiers`) ||
			strings.Contains(r.body, `id="new-tier"`) || strings.Contains(r.body, `id="tier-form"`) {
			t.Fatalf("the auditor's %s: %d %s", path, r.status, r.body)
		}
	}
	// The forged forms hold the current revision: only the permission is missing.
	form = formOf(t, adm.do(http.MethodGet, "/console/tiers/standard", "", "").body, "tier-form")
	form.Set("requests_per_minute", "1")
	form.Set("csrf", aud.csrf)
	for _, path := range []string{"/console/tiers/standard", "/console/tiers/standard/preview"} {
		if r := aud.form(path, form); r.status != http.StatusForbidden {
			t.Fatalf("the auditor's forged POST %s: %d %s", path, r.status, r.body)
		}
	}
	if r := aud.form("/console/tiers", url.Values{"csrf": {aud.csrf}, "name": {"rogue"}, "requests_per_minute": {"1"},
		"tokens_per_hour": {"1"}, "max_concurrent_requests": {"1"}}); r.status != http.StatusForbidden {
		t.Fatalf("the auditor's forged create: %d %s", r.status, r.body)
	}
	if n := tierRPM(); n != 90 {
		t.Fatalf("after the auditor's forged save: requests_per_minute %d", n)
	}

	ta := sign("tenant-admin@demo.example")
	for _, path := range []string{"/console/tiers", "/console/tiers/standard"} {
		if r := ta.do(http.MethodGet, path, "", ""); r.status != http.StatusForbidden || !strings.Contains(r.body, "tiers:read") {
			t.Fatalf("the tenant admin's %s: %d %s", path, r.status, r.body)
		}
	}
	if r := ta.do(http.MethodGet, "/console/", "", ""); strings.Contains(r.body, `href="/console/tiers"`) {
		t.Fatalf("the tenant admin's navigation links the tiers: %s", r.body)
	}
}

// TestConsoleRules: an admin finds the anomaly rules from the alerts page, changes
// a rule's factor and disables it (seen through the admin API, the webhook kept
// and its path never shown), sees a bad factor beside its field and a stale form
// refused, and creates a rule; the auditor sees no edit control and its forged
// save is refused; the tenant admin is refused the page.
func TestConsoleRules(t *testing.T) {
	base, admin, sign := consoleWithSeed(t,
		`/anomaly-rules`, `{"name":"spike","kind":"token_spike","factor":5,"webhook_url":"https://hooks.example.com/services/secret-path-123"}`)
	rule := func(name string) string {
		t.Helper()
		res := do(t, http.MethodGet, base+"/admin/v1/anomaly-rules/"+name, admin, "")
		if res.status != http.StatusOK {
			t.Fatalf("GET the rule %s: %d %s", name, res.status, res.body)
		}
		return res.body
	}

	adm := sign("admin@demo.example")
	if r := adm.do(http.MethodGet, "/console/alerts", "", ""); !strings.Contains(r.body, `<a href="/console/alerts/rules" id="rules-link">`) {
		t.Fatalf("the alerts page has no link to the rules: %s", r.body)
	}
	list := adm.do(http.MethodGet, "/console/alerts/rules", "", "")
	if list.status != http.StatusOK || !strings.Contains(list.body, `<tr id="rule-spike">`) || !strings.Contains(list.body, "over 5 × the 7-day baseline") ||
		!strings.Contains(list.body, `id="new-rule"`) || !strings.Contains(list.body, `<a href="/console/alerts" aria-current="page">`) {
		t.Fatalf("the admin's rule list: %d %s", list.status, list.body)
	}
	page := adm.do(http.MethodGet, "/console/alerts/rules/spike", "", "")
	if page.status != http.StatusOK || !strings.Contains(page.body, `id="rule-form"`) || !strings.Contains(page.body, "https://hooks.example.com/") ||
		strings.Contains(page.body, "secret-path-123") {
		t.Fatalf("the rule's page: %d %s", page.status, page.body)
	}
	form := formOf(t, page.body, "rule-form")
	rev := form.Get("revision")

	form.Set("factor", "0.5")
	if r := adm.form("/console/alerts/rules/spike", form); r.status != http.StatusUnprocessableEntity ||
		!strings.Contains(r.body, `<p class="error" id="factor-error">must be more than 1 and at most 1000</p>`) {
		t.Fatalf("a factor of 0.5: %d %s", r.status, r.body)
	}
	form.Set("factor", "8")
	form.Del("enabled")
	if r := adm.form("/console/alerts/rules/spike", form); r.status != http.StatusSeeOther || r.header.Get("Location") != "/console/alerts/rules/spike?done=rule-saved" {
		t.Fatalf("save the rule: %d %v %s", r.status, r.header, r.body)
	}
	if body := rule("spike"); !strings.Contains(body, `"factor":8`) || !strings.Contains(body, `"enabled":false`) ||
		!strings.Contains(body, `"webhook_url":"https://hooks.example.com/services/secret-path-123"`) || !strings.Contains(body, `"baseline_days":7`) {
		t.Fatalf("the rule after saving: %s", body)
	}
	if r := adm.do(http.MethodGet, "/console/alerts/rules/spike?done=rule-saved", "", ""); !strings.Contains(r.body, `data-done="rule-saved"`) ||
		!strings.Contains(r.body, `<span class="badge off">disabled</span>`) || !strings.Contains(r.body, "over 8 × the 7-day baseline") {
		t.Fatalf("the rule's page after saving: %s", r.body)
	}
	form.Set("factor", "9")
	if r := adm.form("/console/alerts/rules/spike", form); r.status != http.StatusPreconditionFailed || !strings.Contains(r.body, "changed since you loaded it") ||
		formOf(t, r.body, "rule-form").Get("revision") == rev {
		t.Fatalf("a save of an old revision: %d %s", r.status, r.body)
	}
	if body := rule("spike"); !strings.Contains(body, `"factor":8`) {
		t.Fatalf("the rule after a stale save: %s", body)
	}

	created := adm.form("/console/alerts/rules", url.Values{"csrf": {adm.csrf}, "name": {"flags"}, "kind": {"flag_rate"}, "action": {"alert"},
		"enabled": {"true"}, "flag_share": {"0.5"}, "min_requests": {"40"}})
	if created.status != http.StatusSeeOther || created.header.Get("Location") != "/console/alerts/rules/flags?done=rule-created" {
		t.Fatalf("create a rule: %d %v %s", created.status, created.header, created.body)
	}
	if body := rule("flags"); !strings.Contains(body, `"kind":"flag_rate"`) || !strings.Contains(body, `"flag_share":0.5`) || !strings.Contains(body, `"min_requests":40`) {
		t.Fatalf("the rule created in the console: %s", body)
	}

	aud := sign("auditor@demo.example")
	for _, path := range []string{"/console/alerts/rules", "/console/alerts/rules/spike"} {
		r := aud.do(http.MethodGet, path, "", "")
		if r.status != http.StatusOK || !strings.Contains(r.body, "spike") || strings.Contains(r.body, `method="post" action="/console/alerts/rules`) {
			t.Fatalf("the auditor's %s: %d %s", path, r.status, r.body)
		}
	}
	form = formOf(t, adm.do(http.MethodGet, "/console/alerts/rules/spike", "", "").body, "rule-form")
	form.Set("csrf", aud.csrf)
	form.Set("factor", "2")
	if r := aud.form("/console/alerts/rules/spike", form); r.status != http.StatusForbidden {
		t.Fatalf("the auditor's forged save: %d %s", r.status, r.body)
	}
	if body := rule("spike"); !strings.Contains(body, `"factor":8`) {
		t.Fatalf("the rule after the auditor's forged save: %s", body)
	}

	ta := sign("tenant-admin@demo.example")
	if r := ta.do(http.MethodGet, "/console/alerts/rules", "", ""); r.status != http.StatusForbidden {
		t.Fatalf("the tenant admin's rules: %d %s", r.status, r.body)
	}
}

// consoleWithSeed starts a control plane with the dev OIDC provider, the tenant
// demo, the residency eu and the given admin API creations (path and body pairs);
// it returns the base URL, an admin API token, and sign-in.
func consoleWithSeed(t *testing.T, seed ...string) (string, string, func(email string) *session) {
	t.Helper()
	const password = "pw-for-the-console"
	idp, tweak := withOIDC(t, password)
	a, cfg := startApp(t, tweak)
	base := "http://" + a.Addr()
	idp.AllowRedirect(base + "/auth/callback")
	admin := admintest.Admin(t, base, cfg.DataDir)
	seed = append([]string{`/tenants`, `{"name":"demo"}`, `/residency-rules`, `{"residency":"eu","allowed_regions":["eu"]}`}, seed...)
	for i := 0; i+1 < len(seed); i += 2 {
		if res := do(t, http.MethodPost, base+"/admin/v1"+seed[i], admin, seed[i+1]); res.status != http.StatusCreated {
			t.Fatalf("seed %s: %d %s", seed[i], res.status, res.body)
		}
	}
	return base, admin, func(email string) *session { return signIn(t, base, email, password) }
}

// patchAnyRevision changes an entity through the admin API whatever its revision.
func patchAnyRevision(t *testing.T, u, token, body string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPatch, u, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("If-Match", "*")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PATCH %s: %d", u, resp.StatusCode)
	}
}

// tierChanged reports whether the change history holds an update of the tier
// standard by principal from one requests_per_minute to another.
func tierChanged(t *testing.T, base, token, principal string, from, to int64) bool {
	t.Helper()
	res := do(t, http.MethodGet, base+"/admin/v1/changes?resource=tiers", token, "")
	var list struct {
		Items []struct {
			Principal, Credential, Action, Key string
			Before, After                      struct {
				RPM int64 `json:"requests_per_minute"`
			}
		} `json:"items"`
	}
	if res.status != http.StatusOK || json.Unmarshal([]byte(res.body), &list) != nil {
		t.Fatalf("the change history: %d %s", res.status, res.body)
	}
	for _, ch := range list.Items {
		if ch.Principal == principal && strings.HasPrefix(ch.Credential, "session:") && ch.Action == "update" && ch.Key == "standard" &&
			ch.Before.RPM == from && ch.After.RPM == to {
			return true
		}
	}
	return false
}

var (
	inputTag    = regexp.MustCompile(`<input [^>]*>`)
	tagAttr     = regexp.MustCompile(`([a-z-]+)="([^"]*)"`)
	textareaTag = regexp.MustCompile(`(?s)<textarea [^>]*name="([^"]+)"[^>]*>(.*?)</textarea>`)
	selectTag   = regexp.MustCompile(`(?s)<select [^>]*name="([^"]+)"[^>]*>(.*?)</select>`)
	optionTag   = regexp.MustCompile(`<option value="([^"]*)"( selected)?>`)
)

// formOf is what a browser sends from the form with id on page, without a named
// button: its inputs (a checkbox when ticked), textareas and each select's chosen
// option.
func formOf(t *testing.T, page, id string) url.Values {
	t.Helper()
	_, rest, ok := strings.Cut(page, `id="`+id+`"`)
	form, _, closed := strings.Cut(rest, "</form>")
	if !ok || !closed {
		t.Fatalf("no form %s in %s", id, page)
	}
	v := url.Values{}
	for _, tag := range inputTag.FindAllString(form, -1) {
		attrs := map[string]string{}
		for _, m := range tagAttr.FindAllStringSubmatch(tag, -1) {
			attrs[m[1]] = html.UnescapeString(m[2])
		}
		if attrs["name"] == "" || (attrs["type"] == "checkbox" && !strings.Contains(tag, " checked")) {
			continue
		}
		v.Add(attrs["name"], attrs["value"])
	}
	for _, m := range textareaTag.FindAllStringSubmatch(form, -1) {
		v.Set(m[1], html.UnescapeString(m[2]))
	}
	for _, m := range selectTag.FindAllStringSubmatch(form, -1) {
		opts := optionTag.FindAllStringSubmatch(m[2], -1)
		if len(opts) == 0 {
			continue
		}
		chosen := opts[0][1]
		for _, o := range opts {
			if o[2] != "" {
				chosen = o[1]
			}
		}
		v.Set(m[1], html.UnescapeString(chosen))
	}
	return v
}
