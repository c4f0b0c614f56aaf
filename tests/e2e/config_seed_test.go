package e2e

import (
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/shared/vaulttest"
	"github.com/portcullis-gw/portcullis/shared/waitfor"
	"github.com/portcullis-gw/portcullis/tests/mockupstream"
)

// TestSeedBlocksThroughTheDataPlane: the seed's blocks, applied as written, with a
// few declarations of this stack after them (the deployments on the mock, the
// stack's token issuer, a tenant and a client), take effect in a running data
// plane: the tier's model allowlist; the openai key read from the seed's Vault path;
// the audience the file names; the audit header allowlist; and the fallback to
// llama3-8b on the self-hosted deployment in the same region once openai fails; and
// the token_spike rule and the 30-day rotation are the control plane's.
func TestSeedBlocksThroughTheDataPlane(t *testing.T) {
	t.Parallel()
	v := vaulttest.Start(t)
	s := startStack(t, withVault(v), withWorkers(worker{name: "eu", region: "eu"}))
	seed, err := os.ReadFile("../../controlplane/internal/gatewayconfig/testdata/seed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	stamp := time.Now().Format("150405.000000")
	writeKey(t, v, "secret/llm/openai-api-key", "seed-openai-"+stamp, 0)
	writeKey(t, v, "secret/llm/anthropic-api-key", "seed-anthropic-"+stamp, 0)
	mock := s.upURL["eu"]
	s.applyConfig(t, string(seed)+`
# This stack: its token issuer, the mock in place of the providers, a client.
settings:
  gateway:
    auth: { issuer: "`+s.cp.IssuerURL()+`" }
deployments:
  openai: { provider: openai, region: eu, base_url: "`+mock+`/d/openai" }
  anthropic: { provider: anthropic, region: eu, base_url: "`+mock+`/d/anthropic" }
  openai-fallback-eu: { provider: ollama, region: eu, kind: self_hosted, key_source: none, base_url: "`+mock+`/d/openai-fallback-eu" }
tenants:
  demo: {}
residency_rules:
  eu: { allowed_regions: [eu] }
clients:
  seed-app: { tenant: demo, tier: default, residency: eu }
`)
	var minted struct {
		Token string `json:"token"`
	}
	if status, _ := s.admin(t, "POST", "/tokens", map[string]any{"client_id": "seed-app", "audience": "moltbot-gateway"}, &minted); status/100 != 2 {
		t.Fatalf("mint: %d", status)
	}
	waitfor.That(t, "the eu data plane serving seed-app", func() bool {
		return s.callWithID(t, "eu", minted.Token, "", chatBody("gpt-4o-mini")).Status == http.StatusOK
	})

	// The tier default allows gpt-4o-mini only.
	if r := s.call(t, "eu", minted.Token, "POST", "/v1/chat/completions", chatBody("gpt-4o")); r.Status != http.StatusForbidden {
		t.Fatalf("gpt-4o for the default tier: %d %s", r.Status, r.Body)
	}
	// A token for the data plane's own audience is refused: the file's is moltbot-gateway.
	if r := s.call(t, "eu", s.mint(t, "seed-app"), "POST", "/v1/chat/completions", chatBody("gpt-4o-mini")); r.Status != http.StatusUnauthorized {
		t.Fatalf("a token for another audience: %d %s", r.Status, r.Body)
	}
	// The key came from the seed's Vault path, read by the eu worker.
	if access := s.adminRaw(t, "/secrets/access?deployment=openai"); !strings.Contains(access, `"path":"secret/llm/openai-api-key"`) ||
		!strings.Contains(access, `"actor_kind":"worker"`) {
		t.Fatalf("the key access log of openai: %s", access)
	}
	if status := s.adminRaw(t, "/secrets/status"); !strings.Contains(status, `"deployment":"openai"`) {
		t.Fatalf("key status: %s", status)
	}
	var dep struct {
		RotationIntervalDays int     `json:"rotation_interval_days"`
		RotationOverlapHours float64 `json:"rotation_overlap_hours"`
		TLS                  struct {
			MinVersion string `json:"min_version"`
		} `json:"tls"`
	}
	s.admin(t, "GET", "/deployments/openai", nil, &dep)
	if dep.RotationIntervalDays != 30 || dep.RotationOverlapHours != 2 || dep.TLS.MinVersion != "TLS1.3" {
		t.Fatalf("openai's rotation and TLS: %+v", dep)
	}
	if rule := s.adminRaw(t, "/anomaly-rules/token_spike"); !strings.Contains(rule, `"factor":5`) || !strings.Contains(rule, `"action":"alert_and_throttle"`) {
		t.Fatalf("token_spike: %s", rule)
	}

	// openai fails: its requests go to llama3-8b on the eu self-hosted deployment.
	s.upstream["eu"].SetDeploymentFailure("openai", mockupstream.Fail500, time.Now().Add(time.Hour))
	var fell gatewayResponse
	waitfor.That(t, "gpt-4o-mini falling back to llama3-8b", func() bool {
		fell = s.callWithID(t, "eu", minted.Token, "fell-back", chatBody("gpt-4o-mini"))
		return fell.Status == http.StatusOK && fell.Header.Get("X-Portcullis-Fallback") == "llama3-8b"
	})
	served := false
	for _, r := range s.upstream["eu"].Requests() {
		if r.Deployment == "openai-fallback-eu" && r.Model == "llama3-8b" {
			served = true
		}
	}
	if !served {
		t.Fatal("the self-hosted deployment served no llama3-8b request")
	}
	// The audit trail records the file's header allowlist.
	_, events := s.waitAudited(t, "eu", []string{"fell-back"}, 30*time.Second)
	if e := events["fell-back"][len(events["fell-back"])-1]; e.Headers["x-request-id"] != "fell-back" || !e.Fallback {
		t.Fatalf("the fallback's audit event: %+v", e)
	}
}
