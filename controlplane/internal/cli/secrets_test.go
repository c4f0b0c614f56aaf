package cli

import (
	"errors"
	"strings"
	"testing"

	"github.com/portcullis-gw/portcullis/shared/apierr"
)

// TestSecretsCommands runs the secrets commands against a control plane without a
// Vault: reads answer, and rotations say what is missing. The rotator's own tests
// cover rotation against a real Vault; the e2e tests cover the commands with one.
func TestSecretsCommands(t *testing.T) {
	c := newCLI(t)
	if out := c.mustRun("secrets", "status"); !strings.Contains(out, `"data": []`) {
		t.Fatalf("status: %s", out)
	}
	if out := c.mustRun("secrets", "history", "--deployment", "openai-eu", "--limit", "5"); !strings.Contains(out, `"data": []`) {
		t.Fatalf("history: %s", out)
	}
	if out := c.mustRun("secrets", "access"); !strings.Contains(out, `"data": []`) {
		t.Fatalf("access: %s", out)
	}
	_, _, err := c.run("secrets", "rotate", "--provider", "openai")
	if apiErr, ok := errors.AsType[*APIError](err); !ok || apiErr.Code != apierr.VaultUnavailable || !strings.Contains(err.Error(), "PORTCULLIS_VAULT_ADDR") {
		t.Fatalf("rotate without a vault: %v", err)
	}
	for _, args := range [][]string{
		{"secrets", "revoke", "--provider", "openai"},
		{"secrets", "rotate"},
		{"secrets", "rotate", "--provider", "openai", "extra"},
		{"secrets", "expire"},
	} {
		if _, _, err := c.run(args...); !errors.Is(err, ErrUsage) {
			t.Errorf("portcullis %q: err %v, want a usage error", args, err)
		}
	}
	_, _, err = c.run("secrets", "history", "--limit", "0")
	if apiErr, ok := errors.AsType[*APIError](err); !ok || apiErr.Code != apierr.InvalidRequest {
		t.Fatalf("history --limit 0: %v", err)
	}
}
