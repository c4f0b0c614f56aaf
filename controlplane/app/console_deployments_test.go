package app

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// TestConsoleDeployments: an admin changes a deployment's first-byte timeout and
// breaker threshold in the console (seen through the admin API and in the change
// history as the admin's session), sees a threshold the API refuses beside its
// field, is refused a save of an old revision (412) with the deployment as it is
// now, and changes the base URL. An operator finds the endpoint and TLS disabled
// with a note, saves a new timeout without touching them, and a forged save of the
// base URL is refused by the API (403). The admin creates and edits a model, creates
// and deletes a fallback map (not without the confirmation), creates a residency
// rule and changes its regions (the matrix follows), and creates a provider. The
// auditor finds no form and its forged posts get 403 with nothing changed; the
// tenant admin gets 403.
func TestConsoleDeployments(t *testing.T) {
	base, admin, sign := consoleWithSeed(t,
		`/providers`, `{"name":"openai","kind":"openai"}`,
		`/deployments`, `{"name":"openai-eu","provider":"openai","region":"eu","base_url":"http://127.0.0.1:9100/v1","key_source":"none"}`,
		`/deployments`, `{"name":"openai-us","provider":"openai","region":"us","base_url":"http://127.0.0.1:9200/v1","key_source":"none"}`,
		`/models`, `{"id":"mini-eu","name":"gpt-4o-mini","deployment":"openai-eu","upstream_model":"gpt-4o-mini","input_usd_per_1m":0.15,"output_usd_per_1m":0.6}`,
		`/principals`, `{"name":"newhire@demo.example","kind":"person","roles":[{"role":"operator"}]}`,
	)
	type deployment struct {
		BaseURL        string `json:"base_url"`
		TimeoutSeconds int    `json:"timeout_seconds"`
		CircuitBreaker struct {
			FailureThreshold int `json:"failure_threshold"`
		} `json:"circuit_breaker"`
		TLS struct {
			Verify bool `json:"verify"`
		} `json:"tls"`
	}
	get := func(name string) deployment {
		t.Helper()
		res := do(t, http.MethodGet, base+"/admin/v1/deployments/"+name, admin, "")
		var d deployment
		if res.status != http.StatusOK || json.Unmarshal([]byte(res.body), &d) != nil {
			t.Fatalf("GET the deployment %s: %d %s", name, res.status, res.body)
		}
		return d
	}

	adm := sign("admin@demo.example")
	deps := adm.do(http.MethodGet, "/console/deployments", "", "")
	for _, want := range []string{`<a href="/console/deployments/openai-eu">openai-eu</a>`, `<tr id="model-mini-eu"><td><a href="/console/models/mini-eu">gpt-4o-mini</a>`,
		`<a href="/console/residency/eu">eu</a>`, `id="new-model-form"`, `id="new-fallback-form"`, `id="new-provider-form"`, `id="new-residency-form"`} {
		if deps.status != http.StatusOK || !strings.Contains(deps.body, want) {
			t.Fatalf("the admin's deployments page lacks %s: %d %s", want, deps.status, deps.body)
		}
	}
	if !strings.Contains(deps.body, `<input type="hidden" name="csrf" value="`+adm.csrf+`">`) {
		t.Fatalf("the admin's create forms without the session's CSRF token: %s", deps.body)
	}

	// The admin's form: every field may change.
	page := adm.do(http.MethodGet, "/console/deployments/openai-eu", "", "")
	if page.status != http.StatusOK || !strings.Contains(page.body, `id="deployment-form"`) || strings.Contains(page.body, " disabled") ||
		strings.Contains(page.body, `id="keys-note"`) || !strings.Contains(page.body, `<dd id="key-source">none</dd>`) {
		t.Fatalf("the admin's deployment page: %d %s", page.status, page.body)
	}
	form := formOf(t, page.body, "deployment-form")
	rev := form.Get("revision")
	if form.Get("timeout_seconds") != "30" || form.Get("circuit_breaker.failure_threshold") != "5" || form.Get("tls.verify") != "true" ||
		form.Get("base_url") != "http://127.0.0.1:9100/v1" || form.Get("retry.backoff") != "exponential" || form.Get("enabled") != "true" {
		t.Fatalf("the deployment's form: %v", form)
	}

	// Bad values beside their fields: a number that is none (the console's check),
	// a threshold the API refuses.
	bad := cloneValues(form)
	bad.Set("timeout_seconds", "soon")
	if r := adm.form("/console/deployments/openai-eu", bad); r.status != http.StatusUnprocessableEntity ||
		!strings.Contains(r.body, `<p class="error" id="timeout_seconds-error">must be a whole number</p>`) {
		t.Fatalf("a timeout that is no number: %d %s", r.status, r.body)
	}
	bad = cloneValues(form)
	bad.Set("circuit_breaker.failure_threshold", "0")
	if r := adm.form("/console/deployments/openai-eu", bad); r.status != http.StatusUnprocessableEntity ||
		!strings.Contains(r.body, `<p class="error" id="circuit_breaker-failure_threshold-error">must be an integer from 1 to 10000</p>`) ||
		formOf(t, r.body, "deployment-form").Get("circuit_breaker.failure_threshold") != "0" {
		t.Fatalf("a threshold the API refuses: %d %s", r.status, r.body)
	}

	form.Set("timeout_seconds", "45")
	form.Set("circuit_breaker.failure_threshold", "7")
	if r := adm.form("/console/deployments/openai-eu", form); r.status != http.StatusSeeOther ||
		r.header.Get("Location") != "/console/deployments/openai-eu?done=deployment-saved" {
		t.Fatalf("save the deployment: %d %v %s", r.status, r.header, r.body)
	}
	if d := get("openai-eu"); d.TimeoutSeconds != 45 || d.CircuitBreaker.FailureThreshold != 7 || d.BaseURL != "http://127.0.0.1:9100/v1" || !d.TLS.Verify {
		t.Fatalf("the deployment after saving: %+v", d)
	}
	if r := adm.do(http.MethodGet, "/console/deployments/openai-eu?done=deployment-saved", "", ""); !strings.Contains(r.body, `data-done="deployment-saved"`) ||
		!strings.Contains(r.body, `<span id="current-timeout">45</span>`) || !strings.Contains(r.body, `<span id="current-threshold">7</span>`) {
		t.Fatalf("the deployment's page after saving: %s", r.body)
	}
	if !deploymentChanged(t, base, admin, "admin@demo.example", func(before, after deploymentHistory) bool {
		return before.TimeoutSeconds == 30 && after.TimeoutSeconds == 45 &&
			before.CircuitBreaker.FailureThreshold == 5 && after.CircuitBreaker.FailureThreshold == 7
	}) {
		t.Fatal("the change history has no update of openai-eu's timeout 30 → 45 and threshold 5 → 7 by the admin's session")
	}

	// A save based on the old revision, after another change: refused with the
	// deployment as it is now in the form, the typed value named in the message.
	patchAnyRevision(t, base+"/admin/v1/deployments/openai-eu", admin, `{"timeout_seconds":50}`)
	form.Set("timeout_seconds", "55")
	stale := adm.form("/console/deployments/openai-eu", form)
	if stale.status != http.StatusPreconditionFailed || !strings.Contains(stale.body, "changed since you loaded it") ||
		!strings.Contains(stale.body, `<span id="current-timeout">50</span>`) ||
		formOf(t, stale.body, "deployment-form").Get("timeout_seconds") != "50" || formOf(t, stale.body, "deployment-form").Get("revision") == rev ||
		!strings.Contains(stale.body, `timeout_seconds &#34;55&#34;`) {
		t.Fatalf("a save of an old revision: %d %s", stale.status, stale.body)
	}
	if d := get("openai-eu"); d.TimeoutSeconds != 50 {
		t.Fatalf("after the stale save: timeout %d", d.TimeoutSeconds)
	}

	// The admin moves the endpoint.
	form = formOf(t, adm.do(http.MethodGet, "/console/deployments/openai-eu", "", "").body, "deployment-form")
	form.Set("base_url", "http://127.0.0.1:9300/v1")
	if r := adm.form("/console/deployments/openai-eu", form); r.status != http.StatusSeeOther {
		t.Fatalf("the admin's new base URL: %d %s", r.status, r.body)
	}
	if d := get("openai-eu"); d.BaseURL != "http://127.0.0.1:9300/v1" || d.TimeoutSeconds != 50 {
		t.Fatalf("the deployment after the admin's new base URL: %+v", d)
	}
	if !deploymentChanged(t, base, admin, "admin@demo.example", func(before, after deploymentHistory) bool {
		return before.BaseURL == "http://127.0.0.1:9100/v1" && after.BaseURL == "http://127.0.0.1:9300/v1"
	}) {
		t.Fatal("the change history has no update of openai-eu's base URL by the admin's session")
	}

	// The operator: the endpoint and TLS are disabled, with the note; a save sends
	// what a browser sends (no disabled field) and changes the timeout alone.
	op := sign("newhire@demo.example")
	page = op.do(http.MethodGet, "/console/deployments/openai-eu", "", "")
	if page.status != http.StatusOK || !strings.Contains(page.body, `id="deployment-form"`) || !strings.Contains(page.body, `id="keys-note"`) ||
		!strings.Contains(page.body, `<input id="base_url" name="base_url" value="http://127.0.0.1:9300/v1" disabled>`) ||
		!strings.Contains(page.body, `<input id="timeout_seconds" name="timeout_seconds" inputmode="numeric" value="50">`) {
		t.Fatalf("the operator's deployment page: %d %s", page.status, page.body)
	}
	form = browserForm(t, page.body, "deployment-form")
	for _, f := range []string{"base_url", "tls.verify", "tls.min_version", "tls.pin_sha256", "tls.ca_file"} {
		if _, ok := form[f]; ok {
			t.Fatalf("the operator's form sends %s: %v", f, form)
		}
	}
	form.Set("timeout_seconds", "60")
	if r := op.form("/console/deployments/openai-eu", form); r.status != http.StatusSeeOther {
		t.Fatalf("the operator's new timeout: %d %s", r.status, r.body)
	}
	if d := get("openai-eu"); d.TimeoutSeconds != 60 || d.BaseURL != "http://127.0.0.1:9300/v1" || !d.TLS.Verify {
		t.Fatalf("the deployment after the operator's save: %+v", d)
	}
	form = browserForm(t, op.do(http.MethodGet, "/console/deployments/openai-eu", "", "").body, "deployment-form")
	form.Set("base_url", "http://attacker.example/v1")
	if r := op.form("/console/deployments/openai-eu", form); r.status != http.StatusForbidden ||
		!strings.Contains(r.body, `role="alert">Not saved: your roles do not allow it: this request needs the permission deployments:keys; it changes base_url`) ||
		!strings.Contains(r.body, `id="deployment-form"`) {
		t.Fatalf("the operator's forged base URL: %d %s", r.status, r.body)
	}
	if d := get("openai-eu"); d.BaseURL != "http://127.0.0.1:9300/v1" {
		t.Fatalf("the operator's forged base URL went through: %+v", d)
	}
	if r := op.do(http.MethodGet, "/console/deployments", "", ""); r.status != http.StatusOK || strings.Contains(r.body, `id="new-provider-form"`) {
		t.Fatalf("the operator, without providers:write, is offered to create a provider: %d %s", r.status, r.body)
	}

	// Models: a name the API refuses, a model created with its id and one with a
	// generated id, a price changed.
	model := func(id string) string {
		t.Helper()
		return do(t, http.MethodGet, base+"/admin/v1/models/"+id, admin, "").body
	}
	newModel := url.Values{"csrf": {adm.csrf}, "id": {"gpt-4o-us"}, "name": {"GPT 4o"}, "deployment": {"openai-us"}, "upstream_model": {"gpt-4o-2024-08-06"},
		"input_usd_per_1m": {"2.5"}, "output_usd_per_1m": {"10"}, "weight": {"1"}}
	if r := adm.form("/console/models", newModel); r.status != http.StatusUnprocessableEntity ||
		!strings.Contains(r.body, `<p class="error" id="new-model-name-error">must be 1 to 128 lowercase letters`) || !strings.Contains(r.body, `value="GPT 4o"`) {
		t.Fatalf("a model name the API refuses: %d %s", r.status, r.body)
	}
	newModel.Set("name", "gpt-4o")
	if r := adm.form("/console/models", newModel); r.status != http.StatusSeeOther || r.header.Get("Location") != "/console/models/gpt-4o-us?done=model-created" {
		t.Fatalf("create a model: %d %v %s", r.status, r.header, r.body)
	}
	if body := model("gpt-4o-us"); !strings.Contains(body, `"input_usd_per_1m":2.5`) || !strings.Contains(body, `"deployment":"openai-us"`) {
		t.Fatalf("the model created in the console: %s", body)
	}
	newModel.Set("id", "")
	newModel.Set("deployment", "openai-eu")
	if r := adm.form("/console/models", newModel); r.status != http.StatusSeeOther || !regexp.MustCompile(`^/console/models/[0-9a-f-]{36}\?done=model-created$`).MatchString(r.header.Get("Location")) {
		t.Fatalf("create a model with a generated id: %d %v %s", r.status, r.header, r.body)
	}
	page = adm.do(http.MethodGet, "/console/models/gpt-4o-us", "", "")
	form = formOf(t, page.body, "model-form")
	if page.status != http.StatusOK || form.Get("deployment") != "openai-us" || form.Get("input_usd_per_1m") != "2.5" || form.Get("weight") != "1" {
		t.Fatalf("the model's page: %d %v %s", page.status, form, page.body)
	}
	form.Set("input_usd_per_1m", "3")
	if r := adm.form("/console/models/gpt-4o-us", form); r.status != http.StatusSeeOther || r.header.Get("Location") != "/console/models/gpt-4o-us?done=model-saved" {
		t.Fatalf("save the model: %d %v %s", r.status, r.header, r.body)
	}
	if body := model("gpt-4o-us"); !strings.Contains(body, `"input_usd_per_1m":3,`) || !strings.Contains(body, `"output_usd_per_1m":10`) {
		t.Fatalf("the model after saving: %s", body)
	}
	form.Set("input_usd_per_1m", "4")
	if r := adm.form("/console/models/gpt-4o-us", form); r.status != http.StatusPreconditionFailed || !strings.Contains(r.body, `<dd id="current-input">3</dd>`) {
		t.Fatalf("a model save of an old revision: %d %s", r.status, r.body)
	}
	if r := adm.do(http.MethodGet, "/console/deployments", "", ""); !strings.Contains(r.body, `<tr id="model-gpt-4o-us"><td><a href="/console/models/gpt-4o-us">gpt-4o</a></td><td>openai-us</td><td>gpt-4o-2024-08-06</td><td>3</td>`) {
		t.Fatalf("the models on the deployments page: %s", r.body)
	}

	// Fallback maps: created; not deleted without the confirmation; deleted.
	if r := adm.form("/console/fallbacks", url.Values{"csrf": {adm.csrf}, "provider": {"openai"}, "from_model": {"gpt-4o"}, "to_model": {"gpt-4o"}}); r.status != http.StatusUnprocessableEntity ||
		!strings.Contains(r.body, `id="new-fallback-to_model-error">must differ from from_model`) || !strings.Contains(r.body, `<details class="create" id="new-fallback" open>`) {
		t.Fatalf("a fallback to the same model: %d %s", r.status, r.body)
	}
	if r := adm.form("/console/fallbacks", url.Values{"csrf": {adm.csrf}, "provider": {"openai"}, "from_model": {"gpt-4o"}, "to_model": {"llama3:8b"}}); r.status != http.StatusSeeOther ||
		r.header.Get("Location") != "/console/deployments?done=fallback-created" {
		t.Fatalf("create a fallback map: %d %v %s", r.status, r.header, r.body)
	}
	var maps struct {
		Items []struct {
			ID, Provider string
			FromModel    string `json:"from_model"`
			ToModel      string `json:"to_model"`
		} `json:"items"`
	}
	if r := do(t, http.MethodGet, base+"/admin/v1/fallback-maps", admin, ""); json.Unmarshal([]byte(r.body), &maps) != nil || len(maps.Items) != 1 ||
		maps.Items[0].FromModel != "gpt-4o" || maps.Items[0].ToModel != "llama3:8b" || maps.Items[0].Provider != "openai" {
		t.Fatalf("the fallback maps: %s", r.body)
	}
	fb := maps.Items[0].ID
	if r := adm.do(http.MethodGet, "/console/deployments", "", ""); !strings.Contains(r.body, `<tr id="fallback-`+fb+`"><td>openai</td><td>gpt-4o</td><td>llama3:8b</td></tr>`) {
		t.Fatalf("the fallbacks on the deployments page: %s", r.body)
	}
	del := formOf(t, adm.do(http.MethodGet, "/console/deployments", "", "").body, "delete-fallback-form")
	if del.Get("delete_id") != fb || del.Has("confirm") {
		t.Fatalf("the delete form: %v", del)
	}
	if r := adm.form("/console/fallbacks/delete", del); r.status != http.StatusUnprocessableEntity || !strings.Contains(r.body, `id="delete-confirm-error"`) ||
		!strings.Contains(r.body, `<details class="create" id="delete-fallback" open>`) || strings.Contains(r.body, `id="new-fallback" open`) {
		t.Fatalf("a deletion without the confirmation: %d %s", r.status, r.body)
	}
	if r := do(t, http.MethodGet, base+"/admin/v1/fallback-maps/"+fb, admin, ""); r.status != http.StatusOK {
		t.Fatalf("the unconfirmed deletion went through: %d", r.status)
	}
	del.Set("confirm", "delete")
	if r := adm.form("/console/fallbacks/delete", del); r.status != http.StatusSeeOther || r.header.Get("Location") != "/console/deployments?done=fallback-deleted" {
		t.Fatalf("delete the fallback map: %d %v %s", r.status, r.header, r.body)
	}
	if r := do(t, http.MethodGet, base+"/admin/v1/fallback-maps/"+fb, admin, ""); r.status != http.StatusNotFound {
		t.Fatalf("the deleted fallback map: %d %s", r.status, r.body)
	}

	// Residency: a rule created for us, then widened to eu; the matrix follows
	// (columns openai-eu, openai-us).
	if r := adm.form("/console/residency", url.Values{"csrf": {adm.csrf}, "residency": {"apac"}, "allowed_regions": {"US!"}}); r.status != http.StatusUnprocessableEntity ||
		!strings.Contains(r.body, `id="new-residency-allowed_regions-error">region names are not valid`) {
		t.Fatalf("a bad region: %d %s", r.status, r.body)
	}
	if r := adm.form("/console/residency", url.Values{"csrf": {adm.csrf}, "residency": {"apac"}, "allowed_regions": {"us"}}); r.status != http.StatusSeeOther ||
		r.header.Get("Location") != "/console/residency/apac?done=residency-created" {
		t.Fatalf("create a residency rule: %d %v %s", r.status, r.header, r.body)
	}
	matrixRow := func(residency string) string {
		t.Helper()
		return between(adm.do(http.MethodGet, "/console/deployments", "", "").body, `<tr id="residency-`+residency+`">`, `</tr>`)
	}
	if row := matrixRow("apac"); strings.Count(row, `title="allowed"`) != 1 || strings.Count(row, `title="not allowed"`) != 1 ||
		strings.Index(row, `title="not allowed"`) > strings.Index(row, `title="allowed"`) {
		t.Fatalf("apac's row, us only: %s", row)
	}
	page = adm.do(http.MethodGet, "/console/residency/apac?done=residency-created", "", "")
	if !strings.Contains(page.body, `data-done="residency-created"`) || !strings.Contains(page.body, `<dd id="current-regions">us</dd>`) ||
		!strings.Contains(page.body, `<a href="/console/deployments/openai-us">openai-us</a>`) {
		t.Fatalf("the residency's page: %s", page.body)
	}
	form = formOf(t, page.body, "residency-form")
	form.Set("allowed_regions", "us, eu")
	if r := adm.form("/console/residency/apac", form); r.status != http.StatusSeeOther || r.header.Get("Location") != "/console/residency/apac?done=residency-saved" {
		t.Fatalf("save the residency rule: %d %v %s", r.status, r.header, r.body)
	}
	if r := do(t, http.MethodGet, base+"/admin/v1/residency-rules/apac", admin, ""); !strings.Contains(r.body, `"allowed_regions":["us","eu"]`) {
		t.Fatalf("the residency rule after saving: %s", r.body)
	}
	if row := matrixRow("apac"); strings.Count(row, `title="allowed"`) != 2 || strings.Contains(row, `title="not allowed"`) {
		t.Fatalf("apac's row, us and eu: %s", row)
	}
	form.Set("allowed_regions", "eu")
	if r := adm.form("/console/residency/apac", form); r.status != http.StatusPreconditionFailed || !strings.Contains(r.body, `<dd id="current-regions">us, eu</dd>`) {
		t.Fatalf("a residency save of an old revision: %d %s", r.status, r.body)
	}

	// A provider.
	if r := adm.form("/console/providers", url.Values{"csrf": {adm.csrf}, "name": {"claude"}, "kind": {"bedrock"}}); r.status != http.StatusUnprocessableEntity ||
		!strings.Contains(r.body, `id="new-provider-kind-error">must be one of`) {
		t.Fatalf("a provider of an unknown kind: %d %s", r.status, r.body)
	}
	if r := adm.form("/console/providers", url.Values{"csrf": {adm.csrf}, "name": {"claude"}, "kind": {"anthropic"}}); r.status != http.StatusSeeOther ||
		r.header.Get("Location") != "/console/deployments?done=provider-created" {
		t.Fatalf("create a provider: %d %v %s", r.status, r.header, r.body)
	}
	if r := adm.do(http.MethodGet, "/console/deployments?done=provider-created", "", ""); !strings.Contains(r.body, `<tr id="provider-claude"><td>claude</td><td>anthropic</td></tr>`) ||
		!strings.Contains(r.body, `data-done="provider-created"`) {
		t.Fatalf("the provider on the deployments page: %s", r.body)
	}

	// The auditor reads everything and finds no form; its forged posts, each holding
	// the current revision and values, are refused and change nothing.
	aud := sign("auditor@demo.example")
	for _, path := range []string{"/console/deployments", "/console/deployments/openai-eu", "/console/models/gpt-4o-us", "/console/residency/apac"} {
		r := aud.do(http.MethodGet, path, "", "")
		if r.status != http.StatusOK || strings.Contains(r.body, `action="/console/`) || !strings.Contains(r.body, `id="current`) && path != "/console/deployments" {
			t.Fatalf("the auditor's %s: %d %s", path, r.status, r.body)
		}
	}
	forged := func(path, formID string) url.Values {
		t.Helper()
		v := formOf(t, adm.do(http.MethodGet, path, "", "").body, formID)
		v.Set("csrf", aud.csrf)
		return v
	}
	depForm := forged("/console/deployments/openai-eu", "deployment-form")
	depForm.Set("timeout_seconds", "1")
	modelForm := forged("/console/models/gpt-4o-us", "model-form")
	modelForm.Set("input_usd_per_1m", "0")
	resForm := forged("/console/residency/apac", "residency-form")
	resForm.Set("allowed_regions", "eu")
	for _, c := range []struct {
		name, path string
		form       url.Values
	}{
		{"deployment save", "/console/deployments/openai-eu", depForm},
		{"model save", "/console/models/gpt-4o-us", modelForm},
		{"residency save", "/console/residency/apac", resForm},
		{"model create", "/console/models", url.Values{"csrf": {aud.csrf}, "name": {"rogue"}, "deployment": {"openai-eu"}, "upstream_model": {"rogue"}}},
		{"fallback create", "/console/fallbacks", url.Values{"csrf": {aud.csrf}, "provider": {"openai"}, "from_model": {"gpt-4o"}, "to_model": {"rogue"}}},
		{"residency create", "/console/residency", url.Values{"csrf": {aud.csrf}, "residency": {"rogue"}, "allowed_regions": {"eu"}}},
		{"provider create", "/console/providers", url.Values{"csrf": {aud.csrf}, "name": {"rogue"}, "kind": {"openai"}}},
	} {
		t.Run("auditor "+c.name, func(t *testing.T) {
			if r := aud.form(c.path, c.form); r.status != http.StatusForbidden || strings.Contains(r.body, `action="/console/`) {
				t.Fatalf("the auditor's forged %s: %d %s", c.name, r.status, r.body)
			}
		})
	}
	if d := get("openai-eu"); d.TimeoutSeconds != 60 {
		t.Fatalf("after the auditor's forged save: timeout %d", d.TimeoutSeconds)
	}
	if body := model("gpt-4o-us"); !strings.Contains(body, `"input_usd_per_1m":3,`) {
		t.Fatalf("after the auditor's forged model save: %s", body)
	}
	if r := do(t, http.MethodGet, base+"/admin/v1/residency-rules/apac", admin, ""); !strings.Contains(r.body, `"allowed_regions":["us","eu"]`) {
		t.Fatalf("after the auditor's forged residency save: %s", r.body)
	}
	for _, coll := range []string{"models/rogue", "residency-rules/rogue", "providers/rogue"} {
		if r := do(t, http.MethodGet, base+"/admin/v1/"+coll, admin, ""); r.status != http.StatusNotFound {
			t.Fatalf("the auditor's forged create of %s: %d", coll, r.status)
		}
	}
	if r := do(t, http.MethodGet, base+"/admin/v1/fallback-maps", admin, ""); strings.Contains(r.body, "rogue") {
		t.Fatalf("the auditor's forged fallback map: %s", r.body)
	}

	// The tenant admin may not read deployments, models or residency rules.
	ta := sign("tenant-admin@demo.example")
	for _, path := range []string{"/console/deployments/openai-eu", "/console/models/gpt-4o-us", "/console/residency/apac"} {
		if r := ta.do(http.MethodGet, path, "", ""); r.status != http.StatusForbidden {
			t.Fatalf("the tenant admin's %s: %d %s", path, r.status, r.body)
		}
	}
	depForm.Set("csrf", ta.csrf)
	if r := ta.form("/console/deployments/openai-eu", depForm); r.status != http.StatusForbidden {
		t.Fatalf("the tenant admin's forged deployment save: %d %s", r.status, r.body)
	}
	if d := get("openai-eu"); d.TimeoutSeconds != 60 {
		t.Fatalf("after the tenant admin's forged save: timeout %d", d.TimeoutSeconds)
	}
}

// deploymentHistory is the part of a deployment the change history tests read.
type deploymentHistory struct {
	BaseURL        string `json:"base_url"`
	TimeoutSeconds int    `json:"timeout_seconds"`
	CircuitBreaker struct {
		FailureThreshold int `json:"failure_threshold"`
	} `json:"circuit_breaker"`
}

// deploymentChanged reports whether the change history holds an update of the
// deployment openai-eu by principal's console session for which match holds.
func deploymentChanged(t *testing.T, base, token, principal string, match func(before, after deploymentHistory) bool) bool {
	t.Helper()
	res := do(t, http.MethodGet, base+"/admin/v1/changes?resource=deployments", token, "")
	var list struct {
		Items []struct {
			Principal, Credential, Action, Key string
			Before, After                      deploymentHistory
		} `json:"items"`
	}
	if res.status != http.StatusOK || json.Unmarshal([]byte(res.body), &list) != nil {
		t.Fatalf("the change history: %d %s", res.status, res.body)
	}
	for _, ch := range list.Items {
		if ch.Principal == principal && strings.HasPrefix(ch.Credential, "session:") && ch.Action == "update" && ch.Key == "openai-eu" &&
			match(ch.Before, ch.After) {
			return true
		}
	}
	return false
}

var disabledField = regexp.MustCompile(`<(?:input|select|textarea) [^>]*name="([^"]+)"[^>]* disabled[ >]`)

// browserForm is what a browser sends from the form with id on page: formOf without
// the disabled fields.
func browserForm(t *testing.T, page, id string) url.Values {
	t.Helper()
	v := formOf(t, page, id)
	for _, m := range disabledField.FindAllStringSubmatch(page, -1) {
		v.Del(m[1])
	}
	return v
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}
