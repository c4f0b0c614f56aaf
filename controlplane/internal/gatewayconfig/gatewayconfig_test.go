package gatewayconfig

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

func entitiesOf(t *testing.T, yaml string) ([]Entity, Problems) {
	t.Helper()
	d, err := Parse("gateway.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return d.Entities()
}

func find(es []Entity, resource, key string) *Entity {
	for i := range es {
		if es[i].Resource == resource && es[i].Key == key {
			return &es[i]
		}
	}
	return nil
}

func asJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSeedBlocks: the seed document's blocks, in the wrapper, give the three tiers,
// the Vault-keyed providers with their rotation, the upstream settings on the
// derived deployments, the self-hosted fallback in the same region with its models
// and fallback maps, and the token-spike rule; no problems.
func TestSeedBlocks(t *testing.T) {
	raw, err := os.ReadFile("testdata/seed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	es, problems := entitiesOf(t, string(raw))
	if len(problems) > 0 {
		t.Fatalf("problems: %v", problems)
	}
	want := map[string]string{
		"tiers/default":                   `{"allowed_models":["gpt-4o-mini"],"max_concurrent_requests":5,"name":"default","requests_per_minute":60,"tokens_per_hour":100000}`,
		"tiers/service_account_analytics": `{"allowed_models":["gpt-4o-mini"],"allowed_operations":["completion"],"max_concurrent_requests":3,"name":"service_account_analytics","requests_per_minute":30,"tokens_per_hour":50000}`,
		"providers/openai":                `{"kind":"openai","name":"openai"}`,
		"providers/ollama":                `{"kind":"ollama","name":"ollama"}`,
		"deployments/openai": `{"base_url":"https://api.openai.com","circuit_breaker":{"failure_threshold":5,"reset_timeout_seconds":60},` +
			`"key_path":"secret/llm/openai-api-key","key_source":"vault","name":"openai","provider":"openai","region":"eu",` +
			`"retry":{"backoff":"exponential","max_attempts":3},"rotation_interval_days":30,"rotation_overlap_hours":2,` +
			`"timeout_seconds":30,"tls":{"min_version":"TLS1.3","verify":true}}`,
		"deployments/anthropic": `{"base_url":"https://api.anthropic.com","key_path":"secret/llm/anthropic-api-key","key_source":"vault",` +
			`"name":"anthropic","provider":"anthropic","region":"eu","rotation_interval_days":30}`,
		"deployments/openai-fallback-eu":       `{"base_url":"http://ollama.moltbot-infra:11434","key_source":"none","kind":"self_hosted","name":"openai-fallback-eu","provider":"ollama","region":"eu"}`,
		"models/llama3-70b.openai-fallback-eu": `{"deployment":"openai-fallback-eu","id":"llama3-70b.openai-fallback-eu","name":"llama3-70b","upstream_model":"llama3-70b"}`,
		"models/gpt-4o.openai":                 `{"deployment":"openai","id":"gpt-4o.openai","name":"gpt-4o","upstream_model":"gpt-4o"}`,
		"fallback-maps/openai.gpt-4o":          `{"from_model":"gpt-4o","id":"openai.gpt-4o","provider":"openai","to_model":"llama3-70b"}`,
		"fallback-maps/openai.gpt-4o-mini":     `{"from_model":"gpt-4o-mini","id":"openai.gpt-4o-mini","provider":"openai","to_model":"llama3-8b"}`,
		"anomaly-rules/token_spike":            `{"action":"alert_and_throttle","factor":5,"kind":"token_spike","name":"token_spike"}`,
		"settings/gateway": `{"audit_headers":["x-client-id","x-request-id","content-type"],"auth":{"audience":"moltbot-gateway",` +
			`"issuer":"https://auth.internal","require_claims":["client_id","scope"]},` +
			`"fallbacks":[{"circuit_open":true,"error_rate_above":0.1,"provider":"openai"}],"name":"gateway",` +
			`"proxies":[{"http_proxy":"http://squid-proxy.internal:3128","no_proxy":["*.internal","localhost"],"region":"eu"}]}`,
	}
	for id, body := range want {
		res, key, _ := strings.Cut(id, "/")
		e := find(es, res, key)
		if e == nil {
			t.Errorf("no %s", id)
			continue
		}
		if got := asJSON(t, e.Body); got != body {
			t.Errorf("%s:\n got %s\nwant %s", id, got, body)
		}
	}
	if e := find(es, "tiers", "tier_premium"); e == nil {
		t.Error("no tier_premium")
	}
	// Where a derived setting came from: the deployment's key path is the vault_path line.
	d, _ := Parse("gateway.yaml", raw)
	if line, col := d.Pos(find(es, "deployments", "openai").FieldPath("key_path")...); line != 9 || col != 17 {
		t.Errorf("key_path of openai at %d:%d, want 9:17", line, col)
	}
	// Entities are in reference order.
	last := -1
	for _, e := range es {
		i := indexOf(Resources, e.Resource)
		if i < last {
			t.Fatalf("%s/%s after a later resource", e.Resource, e.Key)
		}
		last = i
	}
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

// TestRefusalsAllAtOnce: three refused settings are all reported, each at its line
// and column, sorted.
func TestRefusalsAllAtOnce(t *testing.T) {
	_, problems := entitiesOf(t, `apiVersion: portcullis/v1
region: eu
llm_providers:
  openai:
    key_source: env_var
logging:
  request:
    log_prompt_raw: true
upstream_providers:
  openai:
    tls:
      verify: false
`)
	got := problems.Error()
	want := []string{"5:17: llm_providers.openai.key_source: never:", "8:21: logging.request.log_prompt_raw: never:", "12:15: upstream_providers.openai.tls.verify: never:"}
	if len(problems) != 3 {
		t.Fatalf("problems:\n%s", got)
	}
	for i, w := range want {
		if !strings.HasPrefix(problems[i].String(), w) {
			t.Errorf("problem %d: %s, want %s…", i, problems[i], w)
		}
	}
}

// TestParseProblems: not YAML, an unknown setting, a wrong type and a wrong or
// missing apiVersion are refused with their position.
func TestParseProblems(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown setting", "apiVersion: portcullis/v1\ngateway:\n  auth:\n    metod: jwt\n", "4:5:"},
		{"wrong type", "apiVersion: portcullis/v1\nllm_providers:\n  openai:\n    rotation_interval_days: soon\n", "4:29:"},
		{"not YAML", "apiVersion: portcullis/v1\ngateway: [\n", "2:"},
		{"no version", "region: eu\n", "1:1: apiVersion: is required"},
		{"other version", "apiVersion: portcullis/v9\n", "1:13: apiVersion:"},
		{"duplicate key", "apiVersion: portcullis/v1\nregion: eu\nregion: us\n", "3:1:"},
	} {
		_, err := Parse("f.yaml", []byte(tc.yaml))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %s…", tc.name, err, tc.want)
		}
	}
}

// TestDeclaredTwice: a tier both in per_client_limits and tiers is a problem at the
// second, naming the first.
func TestDeclaredTwice(t *testing.T) {
	_, problems := entitiesOf(t, "apiVersion: portcullis/v1\ntiers:\n  gold: {requests_per_minute: 1}\ngateway:\n  per_client_limits:\n    gold: {requests_per_minute: 2}\n")
	if len(problems) != 1 || !strings.Contains(problems[0].String(), `tier "gold" is already declared at 3:`) {
		t.Fatalf("problems: %v", problems)
	}
}

// TestRegionNeeded: a provider with no deployment and no region is a problem.
func TestRegionNeeded(t *testing.T) {
	_, problems := entitiesOf(t, "apiVersion: portcullis/v1\nupstream_providers:\n  openai:\n    base_url: https://api.openai.com\n")
	if len(problems) != 1 || !strings.Contains(problems[0].Message, "set region at the top") {
		t.Fatalf("problems: %v", problems)
	}
}

// TestParseCondition: the seed's expression and its parts; errors name the place.
func TestParseCondition(t *testing.T) {
	c, err := ParseCondition("openai_circuit_open OR openai_error_rate > 0.1", "openai")
	if err != nil || !c.CircuitOpen || c.ErrorRateAbove == nil || *c.ErrorRateAbove != 0.1 {
		t.Fatalf("%+v %v", c, err)
	}
	if c, err := ParseCondition("openai_error_rate>0.25", "openai"); err != nil || c.CircuitOpen || *c.ErrorRateAbove != 0.25 {
		t.Fatalf("%+v %v", c, err)
	}
	for _, tc := range []struct{ expr, want string }{
		{"", "at character 1: expected"},
		{"openai_circuit_open AND openai_error_rate > 0.1", "at character 21: AND is not supported"},
		{"openai_error_rate > 2", `at character 21: "2" is not a rate`},
		{"anthropic_circuit_open", "another provider's"},
		{"openai_circuit_open OR", "expected openai_circuit_open"},
		{"openai_circuit_open; rm", `unexpected ";"`},
		{"openai_error_rate 0.1", "must be compared with >"},
		{"openai_circuit_open OR openai_circuit_open", "appears twice"},
	} {
		if _, err := ParseCondition(tc.expr, "openai"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want …%s…", tc.expr, err, tc.want)
		}
	}
}

// TestHostileYAML: aliases (which the decoder copies as often as they are named) and
// deep nesting (which the parser pays for more than linearly) are refused before
// any decoding, at their place, and quickly.
func TestHostileYAML(t *testing.T) {
	bomb := "apiVersion: portcullis/v1\na: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
	if _, err := Parse("f.yaml", []byte(bomb)); err == nil || !strings.HasPrefix(err.Error(), "2:4: anchors (&) and aliases (*) are not supported") {
		t.Fatalf("an alias bomb: %v", err)
	}
	deep := "apiVersion: portcullis/v1\nx: " + strings.Repeat("[", 200000) + strings.Repeat("]", 200000) + "\n"
	if _, err := Parse("f.yaml", []byte(deep)); err == nil || !strings.Contains(err.Error(), "2:36: nests deeper than 32 levels") {
		t.Fatalf("deep flow nesting: %v", err)
	}
	var b strings.Builder
	b.WriteString("apiVersion: portcullis/v1\n")
	for i := range 40 {
		b.WriteString(strings.Repeat("  ", i) + "k:\n")
	}
	if _, err := Parse("f.yaml", []byte(b.String())); err == nil || !strings.Contains(err.Error(), "nests deeper than 32 levels") {
		t.Fatalf("deep block nesting: %v", err)
	}
	// Brackets in quotes and comments are text.
	if _, err := Parse("f.yaml", []byte("apiVersion: portcullis/v1 # [[[[\nregion: \""+strings.Repeat("[", 100)+"\"\n")); err != nil {
		t.Fatalf("brackets in a quote and a comment: %v", err)
	}
}
