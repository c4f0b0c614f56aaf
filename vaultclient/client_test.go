package vaultclient_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/shared/logtest"
	"github.com/portcullis-gw/portcullis/shared/vaulttest"
	"github.com/portcullis-gw/portcullis/vaultclient"
)

func newClient(t *testing.T, v *vaulttest.Vault, cfg vaultclient.Config) (*vaultclient.Client, *logtest.Buffer) {
	t.Helper()
	logs := &logtest.Buffer{}
	cfg.Addr = v.Addr
	c, err := vaultclient.New(context.Background(), cfg, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatalf("vaultclient.New: %v", err)
	}
	t.Cleanup(c.Close)
	return c, logs
}

func TestSplitKVPath(t *testing.T) {
	for in, want := range map[string][2]string{
		"secret/portcullis/openai-eu":       {"secret", "portcullis/openai-eu"},
		"/secret/data/portcullis/openai-eu": {"secret", "portcullis/openai-eu"},
		"kv/a":                              {"kv", "a"},
	} {
		m, p, err := vaultclient.SplitKVPath(in)
		if err != nil || m != want[0] || p != want[1] {
			t.Errorf("SplitKVPath(%q) = %q, %q, %v", in, m, p, err)
		}
	}
	for _, bad := range []string{"", "secret", "secret/", "secret/data/"} {
		if _, _, err := vaultclient.SplitKVPath(bad); err == nil {
			t.Errorf("SplitKVPath(%q) accepted", bad)
		}
	}
}

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	err := vaultclient.Config{Auth: "ldap"}.Validate()
	if err == nil || !strings.Contains(err.Error(), "address is required") || !strings.Contains(err.Error(), `"ldap"`) {
		t.Fatalf("Validate: %v", err)
	}
	for _, c := range []vaultclient.Config{
		{Addr: "x", Auth: vaultclient.AuthToken},
		{Addr: "x", Auth: vaultclient.AuthAppRole, RoleID: "r"},
		{Addr: "x", Auth: vaultclient.AuthKubernetes},
	} {
		if c.Validate() == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

func TestKVVersionsAndRotationMetadata(t *testing.T) {
	v := vaulttest.Start(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(v.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, logs := newClient(t, v, vaultclient.Config{Auth: vaultclient.AuthToken, TokenFile: tokenFile})
	ctx := context.Background()
	path := "secret/" + v.Unique("portcullis/openai-eu")

	v1, err := c.WriteKV(ctx, path, "canary-key-one", 0)
	if err != nil || v1 != 1 {
		t.Fatalf("first write: version %d, %v", v1, err)
	}
	if _, err := c.WriteKV(ctx, path, "canary-key-two", 0); err == nil {
		t.Fatal("a check-and-set write against a stale version succeeded")
	}
	v2, err := c.WriteKV(ctx, path, "canary-key-two", v1)
	if err != nil || v2 != 2 {
		t.Fatalf("second write: version %d, %v", v2, err)
	}
	for version, want := range map[int]string{0: "canary-key-two", 1: "canary-key-one", 2: "canary-key-two"} {
		k, err := c.ReadKV(ctx, path, version)
		if err != nil || k.Key != want || (version == 0 && k.Version != 2) {
			t.Fatalf("read version %d: %+v, %v", version, k, err)
		}
	}

	until := time.Now().Add(2 * time.Hour).UTC().Truncate(time.Second)
	if err := c.SetRotationMeta(ctx, path, 1, until, map[int]bool{}); err != nil {
		t.Fatal(err)
	}
	m, err := c.ReadKVMeta(ctx, path)
	if err != nil || m.Current != 2 || m.Previous != 1 || !m.PreviousValidUntil.Equal(until) || len(m.Revoked) != 0 {
		t.Fatalf("metadata after rotation: %+v, %v", m, err)
	}
	if err := c.SetRotationMeta(ctx, path, 1, time.Time{}, map[int]bool{1: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.DestroyKV(ctx, path, 1); err != nil {
		t.Fatal(err)
	}
	m, err = c.ReadKVMeta(ctx, path)
	if err != nil || !m.Revoked[1] || !m.Gone[1] || !m.PreviousValidUntil.IsZero() {
		t.Fatalf("metadata after revocation: %+v, %v", m, err)
	}
	if _, err := c.ReadKV(ctx, path, 1); err == nil {
		t.Fatal("a destroyed version was read")
	}

	// A secret without the key field, and a missing one, are clear errors without
	// any value in them.
	must(t, v, "POST", "secret/data/"+strings.TrimPrefix(path, "secret/")+"-nokey", map[string]any{"data": map[string]any{"other": "canary-key-three"}})
	_, err = c.ReadKV(ctx, path+"-nokey", 0)
	if !errors.Is(err, vaultclient.ErrNoKey) || strings.Contains(err.Error(), "canary") {
		t.Fatalf("read of a secret without api_key: %v", err)
	}
	if _, err := c.ReadKV(ctx, path+"-missing", 0); err == nil {
		t.Fatal("a missing secret was read")
	}
	if strings.Contains(logs.String(), "canary") || strings.Contains(logs.String(), v.Token) {
		t.Fatal("a key or the token reached the log")
	}
}

func TestAppRoleLoginReadsButCannotWrite(t *testing.T) {
	v := vaulttest.Start(t)
	mount := v.Unique("approle")
	must(t, v, "POST", "sys/auth/"+mount, map[string]any{"type": "approle"})
	policy := v.Unique("dataplane")
	prefix := v.Unique("portcullis")
	must(t, v, "PUT", "sys/policies/acl/"+policy, map[string]any{
		"policy": `path "secret/data/` + prefix + `/*" { capabilities = ["read"] }
path "secret/metadata/` + prefix + `/*" { capabilities = ["read"] }`})
	must(t, v, "POST", "auth/"+mount+"/role/dp", map[string]any{"token_policies": policy, "token_ttl": "1h"})
	role := must(t, v, "GET", "auth/"+mount+"/role/dp/role-id", nil)
	secret := must(t, v, "POST", "auth/"+mount+"/role/dp/secret-id", nil)
	roleID, _ := role["data"].(map[string]any)["role_id"].(string)
	secretID, _ := secret["data"].(map[string]any)["secret_id"].(string)
	secretIDFile := filepath.Join(t.TempDir(), "secret-id")
	if err := os.WriteFile(secretIDFile, []byte(secretID), 0o600); err != nil {
		t.Fatal(err)
	}
	path := "secret/" + prefix + "/openai-eu"
	must(t, v, "POST", "secret/data/"+prefix+"/openai-eu", map[string]any{"data": map[string]any{"api_key": "canary-approle"}})

	c, _ := newClient(t, v, vaultclient.Config{Auth: vaultclient.AuthAppRole, RoleID: roleID, SecretIDFile: secretIDFile, Mount: mount})
	k, err := c.ReadKV(context.Background(), path, 0)
	if err != nil || k.Key != "canary-approle" || k.Version != 1 {
		t.Fatalf("read with the approle token: %+v, %v", k, err)
	}
	if _, err := c.WriteKV(context.Background(), path, "x", -1); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("write with a read-only token: %v", err)
	}
}

func TestLeasedSecrets(t *testing.T) {
	v := vaulttest.Start(t)
	c, _ := newClient(t, v, vaultclient.Config{Auth: vaultclient.AuthToken, Token: v.Token})
	mount := v.Unique("kv1")
	must(t, v, "POST", "sys/mounts/"+mount, map[string]any{"type": "kv", "options": map[string]any{"version": "1"}})
	must(t, v, "POST", ""+mount+"/openai", map[string]any{"api_key": "canary-leased", "ttl": "30s"})
	l, err := c.ReadLeased(context.Background(), mount+"/openai")
	if err != nil || l.Key != "canary-leased" || l.Renewable {
		t.Fatalf("KV v1 with a ttl: %+v, %v", l, err)
	}
	if d := time.Until(l.Expires); d < 20*time.Second || d > 31*time.Second {
		t.Fatalf("lease ends in %s, want about 30s", d)
	}
	if _, err := c.ReadLeased(context.Background(), mount+"/missing"); err == nil {
		t.Fatal("a missing leased secret was read")
	}
}

// must sends one request to v as root and fails the test unless it succeeds.
func must(t *testing.T, v *vaulttest.Vault, method, path string, body any) map[string]any {
	t.Helper()
	status, resp := v.Do(t, method, path, body)
	if status/100 != 2 {
		t.Fatalf("vault %s %s: status %d: %v", method, path, status, resp)
	}
	return resp
}

// TestTokenIsRenewedAndLoginRepeatedAtMaxTTL gives the client short-lived tokens: a
// renewable token is kept alive past its TTL, and an AppRole token that reaches its
// max TTL is replaced by a new login, without a failed read in between.
func TestTokenIsRenewedAndLoginRepeatedAtMaxTTL(t *testing.T) {
	v := vaulttest.Start(t)
	must(t, v, "POST", "secret/data/"+v.Unique("renew"), map[string]any{"data": map[string]any{"api_key": "k"}})
	path := "secret/" + v.Unique("renew")

	child := must(t, v, "POST", "auth/token/create", map[string]any{"ttl": "2s", "renewable": true, "policies": []string{"root"}})
	token := child["auth"].(map[string]any)["client_token"].(string)
	renewing, _ := newClient(t, v, vaultclient.Config{Auth: vaultclient.AuthToken, Token: token})

	mount := v.Unique("approle")
	must(t, v, "POST", "sys/auth/"+mount, map[string]any{"type": "approle"})
	policy := v.Unique("reader")
	must(t, v, "PUT", "sys/policies/acl/"+policy, map[string]any{"policy": `path "secret/*" { capabilities = ["read"] }`})
	must(t, v, "POST", "auth/"+mount+"/role/short", map[string]any{"token_policies": policy, "token_ttl": "2s", "token_max_ttl": "4s"})
	roleID := must(t, v, "GET", "auth/"+mount+"/role/short/role-id", nil)["data"].(map[string]any)["role_id"].(string)
	secretID := must(t, v, "POST", "auth/"+mount+"/role/short/secret-id", nil)["data"].(map[string]any)["secret_id"].(string)
	secretIDFile := filepath.Join(t.TempDir(), "secret-id")
	if err := os.WriteFile(secretIDFile, []byte(secretID), 0o600); err != nil {
		t.Fatal(err)
	}
	relogging, logs := newClient(t, v, vaultclient.Config{Auth: vaultclient.AuthAppRole, RoleID: roleID, SecretIDFile: secretIDFile, Mount: mount})

	deadline := time.Now().Add(7 * time.Second) // past both tokens' TTL and the AppRole max TTL
	for time.Now().Before(deadline) {
		for name, c := range map[string]*vaultclient.Client{"renewed token": renewing, "approle": relogging} {
			if _, err := c.ReadKV(context.Background(), path, 0); err != nil {
				t.Fatalf("%s: read failed: %v", name, err)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "logged in to vault again") {
		t.Fatalf("the AppRole client never logged in again:\n%s", logs.String())
	}
}
