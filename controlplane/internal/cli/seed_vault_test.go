package cli

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/portcullis-gw/portcullis/controlplane/app"
	"github.com/portcullis-gw/portcullis/shared/policy"
	"github.com/portcullis-gw/portcullis/shared/vaultclient"
	"github.com/portcullis-gw/portcullis/shared/vaulttest"
)

// newVaultCLI is newCLI with a control plane whose key rotator uses v.
func newVaultCLI(t *testing.T, v *vaulttest.Vault) cliRun {
	t.Helper()
	return newCLI(t, func(c *app.Config) {
		c.Vault = vaultclient.Config{Addr: v.Addr, Auth: vaultclient.AuthToken, Token: v.Token}
	})
}

// vaultKey reads the api_key of path's current version (0) or of version.
func vaultKey(t *testing.T, v *vaulttest.Vault, path string, version int) string {
	t.Helper()
	p := strings.Replace(path, "secret/", "secret/data/", 1)
	if version > 0 {
		p += "?version=" + strconv.Itoa(version)
	}
	status, resp := v.Do(t, http.MethodGet, p, nil)
	if status != http.StatusOK {
		t.Fatalf("vault GET %s: status %d", p, status)
	}
	data, _ := resp["data"].(map[string]any)
	inner, _ := data["data"].(map[string]any)
	key, _ := inner["api_key"].(string)
	return key
}

// writeVaultKey writes key as a new version of path, as an operator does.
func writeVaultKey(t *testing.T, v *vaulttest.Vault, path, key string) {
	t.Helper()
	p := strings.Replace(path, "secret/", "secret/data/", 1)
	if status, resp := v.Do(t, http.MethodPost, p, map[string]any{"data": map[string]any{"api_key": key}}); status != http.StatusOK {
		t.Fatalf("vault POST %s: status %d: %v", p, status, resp)
	}
}

// forgetDemoSecrets deletes every demo secret with all its versions, as a new dev
// Vault starts without them.
func forgetDemoSecrets(t *testing.T, v *vaulttest.Vault) {
	t.Helper()
	paths := []string{demoAdminKeyPath}
	for _, d := range demoDeployments {
		paths = append(paths, demoKeyPath(d.name))
	}
	for _, p := range paths {
		p = strings.Replace(p, "secret/", "secret/metadata/", 1)
		if status, _ := v.Do(t, http.MethodDelete, p, nil); status != http.StatusNoContent {
			t.Fatalf("vault DELETE %s: status %d", p, status)
		}
	}
}

// TestSeedDemoWithVault seeds the demo with its keys in Vault, reseeds it unchanged,
// reseeds it into a new Vault (as every make run with a dev Vault does) after an
// operator's rotation, and goes back to the key file.
func TestSeedDemoWithVault(t *testing.T) {
	v := vaulttest.Start(t)
	forgetDemoSecrets(t, v) // an external Vault may hold them from an earlier run
	c := newVaultCLI(t, v)
	dir := t.TempDir()
	tokenFile, acceptFile, adminFile := filepath.Join(dir, "vault-token"), filepath.Join(dir, "accepted.keys"), filepath.Join(dir, "admin.key")
	if err := os.WriteFile(tokenFile, []byte(v.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	seed := func(what string) string {
		t.Helper()
		_, out, err := c.run("seed", "demo", "--vault-addr", v.Addr, "--vault-token-file", tokenFile,
			"--accept-keys-file", acceptFile, "--admin-key-file", adminFile)
		if err != nil {
			t.Fatalf("%s: %v\n%s", what, err, out)
		}
		if strings.Contains(out, v.Token) {
			t.Fatalf("%s printed the Vault token", what)
		}
		return out
	}
	// secrets reads every demo key from Vault; none may appear in any output.
	secrets := func() []string {
		t.Helper()
		keys := []string{vaultKey(t, v, demoAdminKeyPath, 0)}
		for _, d := range demoDeployments {
			keys = append(keys, vaultKey(t, v, demoKeyPath(d.name), 0))
		}
		return keys
	}
	noKeys := func(what, out string) {
		t.Helper()
		for _, k := range secrets() {
			if strings.Contains(out, k) {
				t.Fatalf("%s printed a key:\n%s", what, out)
			}
		}
	}

	first := seed("first seed")
	noKeys("first seed", first)
	for _, d := range demoDeployments {
		if want := "key       " + demoKeyPath(d.name) + " version 1 written\n"; !strings.Contains(first, want) {
			t.Errorf("first seed lacks %q:\n%s", want, first)
		}
	}
	if !strings.Contains(first, "key       "+demoAdminKeyPath+" version 1 written\n") || !strings.Contains(first, " created, 0 updated, 0 unchanged") {
		t.Fatalf("first seed:\n%s", first)
	}

	var deps []policy.Deployment
	decode(t, c.mustRun("deployments", "list"), &deps)
	if len(deps) != len(demoDeployments) {
		t.Fatalf("%d deployments, want %d", len(deps), len(demoDeployments))
	}
	for _, d := range deps {
		want := policy.Deployment{KeySource: policy.KeySourceVault, KeyPath: "secret/portcullis/" + d.Name, Minter: policy.MinterVaultVersion,
			RotationIntervalDays: 30, RotationOverlapHours: 0.05}
		if d.Provider == "openai" {
			want.Minter, want.AdminKeyPath, want.AdminProjectID = policy.MinterOpenAIAdmin, "secret/portcullis-admin/openai", "proj_demo"
		}
		got := policy.Deployment{KeySource: d.KeySource, KeyPath: d.KeyPath, Minter: d.Minter, RotationIntervalDays: d.RotationIntervalDays,
			RotationOverlapHours: d.RotationOverlapHours, AdminKeyPath: d.AdminKeyPath, AdminProjectID: d.AdminProjectID}
		if !equalJSON(t, got, want) {
			t.Errorf("deployment %s: key settings %+v, want %+v", d.Name, got, want)
		}
	}

	// The mock accepts the vault_version deployments' keys; the openai ones it mints.
	checkAccepted := func(what string) {
		t.Helper()
		b, err := os.ReadFile(acceptFile)
		if err != nil {
			t.Fatal(err)
		}
		var listed []string
		for _, line := range strings.Split(string(b), "\n") {
			if line != "" && !strings.HasPrefix(line, "#") {
				listed = append(listed, line)
			}
		}
		var want []string
		for _, name := range []string{"anthropic-us", "anthropic-eu", "ollama-eu"} {
			want = append(want, vaultKey(t, v, demoKeyPath(name), 0))
		}
		if strings.Join(listed, "\n") != strings.Join(want, "\n") {
			t.Fatalf("%s: the accept-keys file lists %d keys, not the current ones of anthropic-us, anthropic-eu and ollama-eu", what, len(listed))
		}
		for _, f := range []string{acceptFile, adminFile} {
			if info, err := os.Stat(f); err != nil || info.Mode().Perm() != 0o600 {
				t.Fatalf("%s: %s: %v, mode %v; want 0600", what, f, err, info.Mode().Perm())
			}
		}
		admin, err := os.ReadFile(adminFile)
		if err != nil || strings.TrimSpace(string(admin)) != vaultKey(t, v, demoAdminKeyPath, 0) || !strings.HasPrefix(string(admin), "sk-admin-dev-") {
			t.Fatalf("%s: the admin key file does not hold the admin key in Vault (%v)", what, err)
		}
	}
	checkAccepted("first seed")
	openAIKey := vaultKey(t, v, demoKeyPath("openai-eu"), 0)

	second := seed("second seed")
	if !strings.Contains(second, " 0 created, 0 updated") || strings.Contains(second, " written\n") {
		t.Fatalf("second seed changed something:\n%s", second)
	}
	checkAccepted("second seed")
	if vaultKey(t, v, demoKeyPath("openai-eu"), 0) != openAIKey {
		t.Fatal("second seed replaced openai-eu's key")
	}

	// An operator rotates anthropic-eu to version 2.
	writeVaultKey(t, v, demoKeyPath("anthropic-eu"), "dev-anthropic-eu-operator-2")
	c.mustRun("secrets", "rotate", "--provider", "anthropic", "--deployment", "anthropic-eu")

	// make run starts a new dev Vault; the dev database remembers version 2.
	forgetDemoSecrets(t, v)
	third := seed("seed into a new Vault")
	noKeys("seed into a new Vault", third)
	if !strings.Contains(third, "key       secret/portcullis/anthropic-eu version 2 written\n") ||
		!strings.Contains(third, "key       secret/portcullis/anthropic-us version 1 written\n") {
		t.Fatalf("seed into a new Vault did not catch anthropic-eu up with its history:\n%s", third)
	}
	checkAccepted("seed into a new Vault")
	// So the operator's next version is newer than the one the rotator has in use.
	writeVaultKey(t, v, demoKeyPath("anthropic-eu"), "dev-anthropic-eu-operator-3")
	var rotated struct {
		Data []struct {
			OldVersion int `json:"old_version"`
			NewVersion int `json:"new_version"`
		} `json:"data"`
	}
	decode(t, c.mustRun("secrets", "rotate", "--provider", "anthropic", "--deployment", "anthropic-eu"), &rotated)
	rots := rotated.Data
	if len(rots) != 1 || rots[0].OldVersion != 2 || rots[0].NewVersion != 3 {
		t.Fatalf("rotation after the new Vault: %+v, want 2 → 3", rots)
	}

	// Back to the key file: every key setting returns to the file source.
	keyFile := filepath.Join(dir, "upstream.key")
	if err := os.WriteFile(keyFile, []byte("test-upstream-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, back, err := c.run("seed", "demo", "--key-file", keyFile)
	if err != nil {
		t.Fatalf("seed back to the key file: %v\n%s", err, back)
	}
	if !strings.Contains(back, "0 created, 5 updated") {
		t.Fatalf("seed back to the key file did not update the five deployments:\n%s", back)
	}
	deps = nil // decoding into the old slice would keep the fields the answer omits
	decode(t, c.mustRun("deployments", "list"), &deps)
	for _, d := range deps {
		wantSource, wantPath := policy.KeySourceFile, keyFile
		if d.Name == "ollama-eu" {
			wantSource, wantPath = policy.KeySourceNone, ""
		}
		if d.KeySource != wantSource || d.KeyPath != wantPath || d.Minter != "" || d.AdminKeyPath != "" || d.AdminProjectID != "" || d.RotationIntervalDays != 0 {
			t.Errorf("deployment %s after the key file seed: %+v", d.Name, d)
		}
	}
}

func TestSeedDemoKeyFlags(t *testing.T) {
	vault := []string{"--vault-addr", "http://127.0.0.1:1", "--vault-token-file", "t", "--accept-keys-file", "a", "--admin-key-file", "k"}
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"neither", nil, []string{"--key-file is required, or --vault-addr"}},
		{"both", append([]string{"--key-file", "k"}, vault...), []string{"--key-file and --vault-addr cannot both be set"}},
		{"vault alone", []string{"--vault-addr", "http://127.0.0.1:1"}, []string{
			"--vault-token-file is required with --vault-addr", "--accept-keys-file is required with --vault-addr",
			"--admin-key-file is required with --vault-addr"}},
		{"vault files without vault", []string{"--key-file", "k", "--accept-keys-file", "a"}, []string{"--accept-keys-file goes only with --vault-addr"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := Run(context.Background(), append([]string{"--admin-token", "pca_x", "seed", "demo"}, tt.args...),
				IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut}, func(string) string { return "" })
			if !errors.Is(err, ErrUsage) {
				t.Fatalf("err = %v, want a usage error", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want it to say %q", err, w)
				}
			}
		})
	}
}

// TestEnsureDemoKey covers the states a demo secret can be found in.
func TestEnsureDemoKey(t *testing.T) {
	v := vaulttest.Start(t)
	vc, err := vaultclient.New(context.Background(), vaultclient.Config{Addr: v.Addr, Auth: vaultclient.AuthToken, Token: v.Token},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vc.Close)
	tests := []struct {
		name        string
		setup       func(t *testing.T, path string) // nil: no secret
		floor       int
		wantWritten bool
		wantVersion int
	}{
		{name: "no secret", wantWritten: true, wantVersion: 1},
		{name: "no secret, history at 3", floor: 3, wantWritten: true, wantVersion: 3},
		{name: "usable", setup: func(t *testing.T, p string) { writeVaultKey(t, v, p, "dev-kept-1") }, wantVersion: 1},
		{name: "usable at the history's version", floor: 2, setup: func(t *testing.T, p string) {
			writeVaultKey(t, v, p, "dev-kept-1")
			writeVaultKey(t, v, p, "dev-kept-2")
		}, wantVersion: 2},
		{name: "behind the history", floor: 4, setup: func(t *testing.T, p string) { writeVaultKey(t, v, p, "dev-stale-1") },
			wantWritten: true, wantVersion: 4},
		{name: "current revoked", setup: func(t *testing.T, p string) {
			writeVaultKey(t, v, p, "dev-revoked-1")
			meta := strings.Replace(p, "secret/", "secret/metadata/", 1)
			if status, _ := v.Do(t, http.MethodPost, meta, map[string]any{"custom_metadata": map[string]any{vaultclient.MetaRevokedVersions: "1"}}); status/100 != 2 {
				t.Fatalf("set metadata: status %d", status)
			}
		}, wantWritten: true, wantVersion: 2},
		{name: "current destroyed", setup: func(t *testing.T, p string) {
			writeVaultKey(t, v, p, "dev-destroyed-1")
			destroy := strings.Replace(p, "secret/", "secret/destroy/", 1)
			if status, _ := v.Do(t, http.MethodPost, destroy, map[string]any{"versions": []int{1}}); status/100 != 2 {
				t.Fatalf("destroy: status %d", status)
			}
		}, wantWritten: true, wantVersion: 2},
		{name: "no api_key field", setup: func(t *testing.T, p string) {
			data := strings.Replace(p, "secret/", "secret/data/", 1)
			if status, _ := v.Do(t, http.MethodPost, data, map[string]any{"data": map[string]any{"other": "x"}}); status != http.StatusOK {
				t.Fatalf("write: status %d", status)
			}
		}, wantWritten: true, wantVersion: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := "secret/" + v.Unique("portcullis-seed-test/"+strings.ReplaceAll(tt.name, " ", "-"))
			if tt.setup != nil {
				tt.setup(t, path)
			}
			k, wrote, err := ensureDemoKey(context.Background(), vc, path, "dev-test-", tt.floor)
			if err != nil {
				t.Fatal(err)
			}
			if wrote != tt.wantWritten || k.Version != tt.wantVersion {
				t.Fatalf("wrote %v version %d, want %v version %d", wrote, k.Version, tt.wantWritten, tt.wantVersion)
			}
			if got := vaultKey(t, v, path, 0); got != k.Key {
				t.Fatal("the key returned is not the current one in Vault")
			}
			if wrote && !strings.HasPrefix(k.Key, "dev-test-") {
				t.Fatalf("a written key starts %q, want the prefix dev-test-", k.Key[:min(len(k.Key), 9)])
			}
		})
	}
}
