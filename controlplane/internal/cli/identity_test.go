package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// as is c with another token.
func (c cliRun) as(token string) cliRun { c.token = token; return c }

// TestPrincipalsTokensAndChanges: an administrator makes an auditor service account
// and a token for it with the CLI; the auditor reads but cannot write; the change
// history lists and exports every write, verifies, and fails verification once a
// record in the export is altered; a revoked token stops working.
func TestPrincipalsTokensAndChanges(t *testing.T) {
	c := newCLI(t)
	c.mustRun("tenants", "create", "--json", `{"name":"acme"}`)
	c.mustRun("principals", "create", "ci-auditor", "--role", "auditor", "--display-name", "CI audit job")
	c.mustRun("principals", "create", "acme-ops", "--role", "tenant_admin:acme")
	token := strings.TrimSpace(c.mustRun("api-tokens", "create", "--principal", "ci-auditor", "--name", "nightly export", "--expires", "1h"))
	if !strings.HasPrefix(token, "pct_") {
		t.Fatalf("api-tokens create printed %q, want the bare token", token)
	}
	auditor := c.as(token)
	if out := auditor.mustRun("whoami"); !strings.Contains(out, `"principal": "ci-auditor"`) || !strings.Contains(out, `"role": "auditor"`) {
		t.Fatalf("whoami: %s", out)
	}
	auditor.mustRun("tenants", "list")
	_, _, err := auditor.run("tenants", "create", "--json", `{"name":"nope"}`)
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 403 || apiErr.Code != "forbidden" || !strings.Contains(apiErr.Message, "tenants:write") {
		t.Fatalf("an auditor creating a tenant: %v, want 403 forbidden naming tenants:write", err)
	}
	if out := c.mustRun("principals", "roles", "acme-ops", "tenant_admin:acme", "auditor"); !strings.Contains(out, `"auditor"`) {
		t.Fatalf("roles: %s", out)
	}

	if out := auditor.mustRun("changes", "--resource", "tenants"); !strings.Contains(out, `"principal": "test-admin"`) ||
		!strings.Contains(out, `"action": "create"`) || !strings.Contains(out, `"key": "acme"`) {
		t.Fatalf("changes list: %s", out)
	}
	if out := auditor.mustRun("changes", "verify"); !strings.HasPrefix(out, "OK: the control plane's change history") {
		t.Fatalf("changes verify: %s", out)
	}
	file := filepath.Join(t.TempDir(), "changes.jsonl")
	auditor.mustRun("changes", "export", "-o", file)
	if out := auditor.mustRun("changes", "verify", file); !strings.HasPrefix(out, "OK: "+file) {
		t.Fatalf("verify the export: %s", out)
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Replace(raw, []byte(`"display_name":"CI audit job"`), []byte(`"display_name":"CI audit jab"`), 1)
	if bytes.Equal(tampered, raw) {
		t.Fatalf("the export lacks the principal's creation:\n%s", raw)
	}
	if err := os.WriteFile(file, tampered, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := auditor.run("changes", "verify", file); err == nil || !strings.Contains(err.Error(), "FAILED") ||
		!strings.Contains(err.Error(), "altered") {
		t.Fatalf("verify a tampered export: %v", err)
	}

	var tokens string
	if tokens = c.mustRun("api-tokens", "list", "--principal", "ci-auditor"); strings.Contains(tokens, token) {
		t.Fatal("api-tokens list shows the token")
	}
	id := between(tokens, `"id": "`, `"`)
	c.mustRun("api-tokens", "revoke", id, "--principal", "ci-auditor")
	if _, _, err := auditor.run("whoami"); !errors.As(err, &apiErr) || apiErr.Status != 401 {
		t.Fatalf("whoami with a revoked token: %v", err)
	}
	if err := Run(context.Background(), []string{"changes", "frobnicate"}, IO{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}},
		func(string) string { return "" }); !errors.Is(err, ErrUsage) {
		t.Fatalf("unknown verb: %v", err)
	}
}

// between is the text of s after the first open, up to close.
func between(s, open, close string) string {
	_, rest, _ := strings.Cut(s, open)
	v, _, _ := strings.Cut(rest, close)
	return v
}
