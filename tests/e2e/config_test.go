package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

// applyConfig posts a gateway.yaml to the control plane's config apply.
func (s *stack) applyConfig(t *testing.T, yaml string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.adminURL+"/admin/v1/config:apply", bytes.NewBufferString(yaml))
	req.Header.Set("Authorization", "Bearer "+s.adminToken)
	req.Header.Set("Content-Type", "application/yaml")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var plan struct {
		Applied bool `json:"applied"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &plan) != nil || !plan.Applied {
		t.Fatalf("apply: %d %s", resp.StatusCode, raw)
	}
}

// TestConfigAuthAndHeadersReachTheDataPlanes: a gateway.yaml's gateway.auth and
// logging.request.log_headers, applied to a running stack, are enforced by the data
// planes without a restart: a token for the old audience is refused within 2 s,
// one for the file's jwt_audience is served, and the audit event records the
// headers of the file's allowlist.
func TestConfigAuthAndHeadersReachTheDataPlanes(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	s.seed(t)
	s.waitReady(t)
	old := s.mint(t, "eu-app")
	if r := s.callWithID(t, "eu", old, "before-apply", chatBody("gpt-4o-mini")); r.Status != http.StatusOK {
		t.Fatalf("before the apply: %d %s", r.Status, r.Body)
	}

	s.applyConfig(t, `apiVersion: portcullis/v1
gateway:
  auth:
    method: jwt
    jwt_audience: "moltbot-gateway"
    require_claims: [client_id, scope]
logging:
  request:
    log_headers: ["x-request-id", "content-type"]
`)
	applied := time.Now()
	waitfor.Within(t, 2*time.Second, "the eu data plane refusing the old audience", func() bool {
		return s.call(t, "eu", old, "POST", "/v1/chat/completions", chatBody("gpt-4o-mini")).Status == http.StatusUnauthorized
	})
	t.Logf("the new audience was enforced %v after the apply", time.Since(applied).Round(time.Millisecond))

	var minted struct {
		Token string `json:"token"`
	}
	if status, _ := s.admin(t, "POST", "/tokens", map[string]any{"client_id": "eu-app", "audience": "moltbot-gateway"}, &minted); status/100 != 2 {
		t.Fatalf("mint for the new audience: %d", status)
	}
	if r := s.callWithID(t, "eu", minted.Token, "after-apply", chatBody("gpt-4o-mini")); r.Status != http.StatusOK {
		t.Fatalf("a token for the file's audience: %d %s", r.Status, r.Body)
	}
	_, events := s.waitAudited(t, "eu", []string{"before-apply", "after-apply"}, 30*time.Second)
	before, after := events["before-apply"][0], events["after-apply"][0]
	if _, ok := before.Headers["x-request-id"]; ok {
		t.Fatalf("the event before the apply recorded x-request-id: %v", before.Headers)
	}
	if after.Headers["x-request-id"] != "after-apply" || after.Headers["content-type"] != "application/json" {
		t.Fatalf("the event after the apply: headers %v", after.Headers)
	}
}
