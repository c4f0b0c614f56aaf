package app

import (
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/portcullis-gw/portcullis/controlplane/admintest"
)

// applyYAML posts a gateway.yaml to the config apply endpoint.
func applyYAML(t *testing.T, base, token, query, body string, header ...string) httpResult {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/admin/v1/config:apply"+query, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/yaml")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return httpResult{resp.StatusCode, resp.Header, b.String()}
}

type planBody struct {
	Version int64 `json:"version"`
	Applied bool  `json:"applied"`
	Changes []struct {
		Action, Resource, Key string
		Fields                []struct{ Field string } `json:"fields"`
	} `json:"changes"`
	Unmanaged int `json:"unmanaged"`
}

func plan(t *testing.T, r httpResult) planBody {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("apply: %d %s", r.status, r.body)
	}
	var p planBody
	if err := json.Unmarshal([]byte(r.body), &p); err != nil {
		t.Fatalf("%v: %s", err, r.body)
	}
	return p
}

// TestConfigApply: the seed's blocks apply as one policy version and a second apply
// changes nothing; the export applies as no change; a file with three problems
// reports each at its line and column and applies nothing; a plan's version refuses
// an apply after the policy changed; --prune deletes what the file no longer holds.
func TestConfigApply(t *testing.T) {
	a, cfg := startApp(t)
	base := "http://" + a.Addr()
	admin := admintest.Admin(t, base, cfg.DataDir)
	seed, err := os.ReadFile("../internal/gatewayconfig/testdata/seed.yaml")
	if err != nil {
		t.Fatal(err)
	}

	dry := plan(t, applyYAML(t, base, admin, "?dry_run=true", string(seed)))
	if dry.Applied || len(dry.Changes) < 15 {
		t.Fatalf("the seed's dry run: %+v", dry)
	}
	if r := do(t, http.MethodGet, base+"/admin/v1/tiers/tier_premium", admin, ""); r.status != http.StatusNotFound {
		t.Fatalf("a dry run wrote: %d", r.status)
	}
	applied := plan(t, applyYAML(t, base, admin, "", string(seed), "If-Match", `"`+itoa(dry.Version)+`"`))
	if !applied.Applied || applied.Version != dry.Version+1 || len(applied.Changes) != len(dry.Changes) {
		t.Fatalf("the seed applied: %+v (dry run %+v)", applied, dry)
	}
	for _, check := range []struct{ path, want string }{
		{"/tiers/tier_premium", `"requests_per_minute":600`},
		{"/tiers/service_account_analytics", `"allowed_operations":["completion"]`},
		{"/deployments/openai", `"key_source":"vault"`},
		{"/deployments/openai", `"rotation_interval_days":30`},
		{"/deployments/openai", `"rotation_overlap_hours":2`},
		{"/deployments/openai-fallback-eu", `"kind":"self_hosted"`},
		{"/fallback-maps/openai.gpt-4o", `"to_model":"llama3-70b"`},
		{"/anomaly-rules/token_spike", `"factor":5`},
	} {
		if r := do(t, http.MethodGet, base+"/admin/v1"+check.path, admin, ""); !strings.Contains(r.body, check.want) {
			t.Errorf("%s after apply: %d %s (want %s)", check.path, r.status, r.body, check.want)
		}
	}
	again := plan(t, applyYAML(t, base, admin, "", string(seed)))
	if len(again.Changes) != 0 || again.Version != applied.Version {
		t.Fatalf("a second apply: %+v", again)
	}

	exp := do(t, http.MethodGet, base+"/admin/v1/config", admin, "")
	if exp.status != http.StatusOK || !strings.HasPrefix(exp.body, "apiVersion: portcullis/v1\n") || !strings.Contains(exp.body, "tier_premium:") {
		t.Fatalf("export: %d %s", exp.status, exp.body)
	}
	if p := plan(t, applyYAML(t, base, admin, "?dry_run=true&prune=true", exp.body)); len(p.Changes) != 0 || p.Unmanaged != 0 {
		t.Fatalf("export | apply --dry-run --prune: %+v\n%s", p, exp.body)
	}

	bad := applyYAML(t, base, admin, "", `apiVersion: portcullis/v1
region: eu
tiers:
  gold:
    requests_per_minute: -1
    tokens_per_hour: 10
    max_concurrent_requests: 1
llm_providers:
  openai:
    key_source: env_var
logging:
  request:
    log_prompt_raw: true
`)
	var problems struct {
		Error struct {
			Problems []struct {
				Line, Column int
				Path         string
			} `json:"problems"`
		} `json:"error"`
	}
	if bad.status != http.StatusUnprocessableEntity || json.Unmarshal([]byte(bad.body), &problems) != nil || len(problems.Error.Problems) != 3 {
		t.Fatalf("a file with three problems: %d %s", bad.status, bad.body)
	}
	for i, want := range []struct {
		line, col int
		path      string
	}{{5, 26, "tiers.gold.requests_per_minute"}, {10, 17, "llm_providers.openai.key_source"}, {13, 21, "logging.request.log_prompt_raw"}} {
		if p := problems.Error.Problems[i]; p.Line != want.line || p.Column != want.col || p.Path != want.path {
			t.Errorf("problem %d: %+v, want %+v", i, p, want)
		}
	}
	if r := do(t, http.MethodGet, base+"/admin/v1/tiers/gold", admin, ""); r.status != http.StatusNotFound {
		t.Fatalf("a file with problems applied something: %d", r.status)
	}

	// A plan's version, after someone else's change: refused.
	edited := strings.Replace(string(seed), "requests_per_minute: 600", "requests_per_minute: 700", 1)
	p := plan(t, applyYAML(t, base, admin, "?dry_run=true", edited))
	if len(p.Changes) != 1 || p.Changes[0].Key != "tier_premium" || p.Changes[0].Fields[0].Field != "requests_per_minute" {
		t.Fatalf("the edit's plan: %+v", p)
	}
	patchAnyRevision(t, base+"/admin/v1/tiers/default", admin, `{"tokens_per_hour":100001}`)
	if r := applyYAML(t, base, admin, "", edited, "If-Match", `"`+itoa(p.Version)+`"`); r.status != http.StatusPreconditionFailed {
		t.Fatalf("an apply of a stale plan: %d %s", r.status, r.body)
	}
	forced := plan(t, applyYAML(t, base, admin, "", edited))
	if len(forced.Changes) != 2 { // tier_premium, and default back to the file's value
		t.Fatalf("a forced apply: %+v", forced)
	}

	// --prune deletes what the file no longer holds, in reference order.
	without := strings.Replace(edited, "  - rule: \"token_spike\"\n    condition: \"tokens_per_hour > 5x_baseline\"\n    action: alert_and_throttle\n", "", 1)
	without = strings.Replace(without, "anomaly_detection:\n", "", 1)
	if p := plan(t, applyYAML(t, base, admin, "?dry_run=true", without)); len(p.Changes) != 0 || p.Unmanaged != again.Unmanaged+1 {
		t.Fatalf("without --prune (the seed leaves %d built-in entities unmanaged): %+v", again.Unmanaged, p)
	}
	pruned := plan(t, applyYAML(t, base, admin, "?prune=true", without))
	if len(pruned.Changes) != again.Unmanaged+1 {
		t.Fatalf("with --prune: %+v", pruned)
	}
	for _, ch := range pruned.Changes {
		if ch.Action != "delete" {
			t.Fatalf("with --prune: %+v", pruned)
		}
	}
	if r := do(t, http.MethodGet, base+"/admin/v1/anomaly-rules/token_spike", admin, ""); r.status != http.StatusNotFound {
		t.Fatalf("token_spike after --prune: %d", r.status)
	}
	if p := plan(t, applyYAML(t, base, admin, "?dry_run=true", without)); len(p.Changes) != 0 || p.Unmanaged != 0 {
		t.Fatalf("after --prune: %+v", p)
	}
}

func itoa(n int64) string { return jsonInt(n) }

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }

// TestConfigPrincipals: a file's principals are created with their role bindings,
// changed, exported, never pruned, and a bad role is reported at its line.
func TestConfigPrincipals(t *testing.T) {
	a, cfg := startApp(t)
	base := "http://" + a.Addr()
	admin := admintest.Admin(t, base, cfg.DataDir)
	file := `apiVersion: portcullis/v1
tenants:
  demo: {}
principals:
  ci-bot:
    kind: service
    display_name: "CI"
    roles: [{role: operator}, {role: tenant_admin, tenant: demo}]
`
	if p := plan(t, applyYAML(t, base, admin, "", file)); len(p.Changes) != 2 || p.Changes[1].Resource != "principals" || p.Changes[1].Action != "create" {
		t.Fatalf("the first apply: %+v", p)
	}
	if r := do(t, http.MethodGet, base+"/admin/v1/principals/ci-bot", admin, ""); !strings.Contains(r.body, `"role":"operator"`) ||
		!strings.Contains(r.body, `"role":"tenant_admin","tenant":"demo"`) {
		t.Fatalf("ci-bot: %s", r.body)
	}
	if p := plan(t, applyYAML(t, base, admin, "", file)); len(p.Changes) != 0 {
		t.Fatalf("a second apply: %+v", p)
	}
	changed := strings.Replace(file, "{role: operator}, ", "", 1)
	p := plan(t, applyYAML(t, base, admin, "", changed))
	if len(p.Changes) != 1 || p.Changes[0].Action != "update" || p.Changes[0].Fields[0].Field != "roles" {
		t.Fatalf("dropping a role: %+v", p)
	}
	if r := do(t, http.MethodGet, base+"/admin/v1/principals/ci-bot", admin, ""); strings.Contains(r.body, `"role":"operator"`) {
		t.Fatalf("ci-bot after dropping operator: %s", r.body)
	}
	if exp := do(t, http.MethodGet, base+"/admin/v1/config", admin, ""); !strings.Contains(exp.body, "ci-bot:") {
		t.Fatalf("the export has no ci-bot: %s", exp.body)
	}
	for _, ch := range plan(t, applyYAML(t, base, admin, "?prune=true", "apiVersion: portcullis/v1\ntenants:\n  demo: {}\n")).Changes {
		if ch.Resource == "principals" {
			t.Fatalf("--prune touched principal %s", ch.Key)
		}
	}
	if r := do(t, http.MethodGet, base+"/admin/v1/principals/ci-bot", admin, ""); r.status != http.StatusOK {
		t.Fatalf("ci-bot after --prune: %d", r.status)
	}
	if r := applyYAML(t, base, admin, "?dry_run=true", strings.Replace(changed, "kind: service", "kind: person", 1)); r.status != http.StatusUnprocessableEntity ||
		!strings.Contains(r.body, `"line":6`) || !strings.Contains(r.body, "kind cannot change") {
		t.Fatalf("a kind change: %d %s", r.status, r.body)
	}
	if r := applyYAML(t, base, admin, "?dry_run=true", strings.Replace(changed, "roles: [", "roles: [{role: tenant_admin, tenant: demo}, ", 1)); r.status != http.StatusUnprocessableEntity ||
		!strings.Contains(r.body, "is listed twice") {
		t.Fatalf("a role twice: %d %s", r.status, r.body)
	}
	bad := applyYAML(t, base, admin, "", strings.Replace(changed, "role: tenant_admin", "role: superuser", 1))
	if bad.status != http.StatusUnprocessableEntity || !strings.Contains(bad.body, `"line":8,"column":20,"path":"principals.ci-bot.roles[0].role"`) {
		t.Fatalf("a bad role: %d %s", bad.status, bad.body)
	}
}
