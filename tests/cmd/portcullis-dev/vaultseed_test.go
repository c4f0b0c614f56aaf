package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	cpapp "github.com/portcullis-gw/portcullis/controlplane/app"
	"github.com/portcullis-gw/portcullis/controlplane/pgtest"
	"github.com/portcullis-gw/portcullis/shared/policy"
	"github.com/portcullis-gw/portcullis/shared/vaulttest"
	"github.com/portcullis-gw/portcullis/shared/waitfor"
	teststack "github.com/portcullis-gw/portcullis/tests/stack"
	"github.com/portcullis-gw/portcullis/vaultclient"
)

// testUpstream is the mock's base URL the demo deployments of these tests point at;
// nothing serves it.
const testUpstream = "http://127.0.0.1:9"

// demoNames are the demo deployments, with their providers, as make run's demo (deploy/demo/gateway.yaml)
// creates them.
var demoNames = []struct{ name, provider string }{
	{"openai-us", "openai"}, {"openai-eu", "openai"},
	{"anthropic-us", "anthropic"}, {"anthropic-eu", "anthropic"}, {"ollama-eu", "ollama"},
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
	for _, d := range demoNames {
		paths = append(paths, demoKeyPath(d.name))
	}
	for _, p := range paths {
		p = strings.Replace(p, "secret/", "secret/metadata/", 1)
		if status, _ := v.Do(t, http.MethodDelete, p, nil); status != http.StatusNoContent {
			t.Fatalf("vault DELETE %s: status %d", p, status)
		}
	}
}

// startControlPlane starts a control plane whose rotator uses v, with package stack,
// and creates the demo's deployments on the key file, as make run's demo (deploy/demo/gateway.yaml) does.
func startControlPlane(t *testing.T, v *vaulttest.Vault) *adminClient {
	t.Helper()
	ctx := context.Background()
	keyDir := t.TempDir() // the demo's key file, the control plane's PORTCULLIS_KEY_DIR
	st, err := teststack.Start(ctx, teststack.Options{LogDir: t.TempDir(), ControlPlane: &cpapp.Config{
		KeyDir:                keyDir,
		DatabaseURL:           pgtest.Database(t),
		DataDir:               t.TempDir(),
		LogLevel:              "error",
		PublishInterval:       30 * time.Second,
		NATSReplicas:          cpapp.DefaultNATSReplicas,
		WorkerTTL:             cpapp.DefaultWorkerTTL,
		RotationCheckInterval: time.Hour,
		Vault:                 vaultclient.Config{Addr: v.Addr, Auth: vaultclient.AuthToken, Token: v.Token},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := st.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	admin := newAdminClient(st.AdminURL, st.AdminToken)
	keyFile := filepath.Join(keyDir, "openai.key")
	for _, body := range []map[string]any{{"name": "openai", "kind": "openai"}, {"name": "anthropic", "kind": "anthropic"}, {"name": "ollama", "kind": "ollama"}} {
		if _, err := admin.call(ctx, http.MethodPost, "/providers", body, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range demoNames {
		region, kind := d.name[strings.LastIndex(d.name, "-")+1:], policy.KindCloud
		body := map[string]any{"name": d.name, "provider": d.provider, "region": region, "kind": kind,
			"base_url": testUpstream + "/d/" + d.name, "key_source": policy.KeySourceFile, "key_path": keyFile}
		if d.provider == "ollama" {
			body["kind"], body["key_source"], body["key_path"] = policy.KindSelfHosted, policy.KeySourceNone, nil
		}
		if _, err := admin.call(ctx, http.MethodPost, "/deployments", body, nil); err != nil {
			t.Fatal(err)
		}
	}
	return admin
}

// TestSeedVault seeds the demo's keys into Vault, reseeds them unchanged, and reseeds
// them into a new Vault (as every make run with a dev Vault does) after an operator's
// rotation.
func TestSeedVault(t *testing.T) {
	v := vaulttest.Start(t)
	forgetDemoSecrets(t, v) // an external Vault may hold them from an earlier run
	admin := startControlPlane(t, v)
	ctx := context.Background()
	dir := t.TempDir()
	tokenFile, acceptFile, adminFile := filepath.Join(dir, "vault-token"), filepath.Join(dir, "accepted.keys"), filepath.Join(dir, "admin.key")
	if err := os.WriteFile(tokenFile, []byte(v.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	seed := func(what string) string {
		t.Helper()
		var out strings.Builder
		err := seedVault(ctx, admin, vaultSeed{addr: v.Addr, tokenFile: tokenFile, upstreamURL: testUpstream,
			acceptKeysFile: acceptFile, adminKeyFile: adminFile, report: &out})
		if err != nil {
			t.Fatalf("%s: %v\n%s", what, err, out.String())
		}
		if strings.Contains(out.String(), v.Token) {
			t.Fatalf("%s printed the Vault token", what)
		}
		return out.String()
	}
	// secrets reads every demo key from Vault; none may appear in any output.
	noKeys := func(what, out string) {
		t.Helper()
		keys := []string{vaultKey(t, v, demoAdminKeyPath, 0)}
		for _, d := range demoNames {
			keys = append(keys, vaultKey(t, v, demoKeyPath(d.name), 0))
		}
		for _, k := range keys {
			if strings.Contains(out, k) {
				t.Fatalf("%s printed a key:\n%s", what, out)
			}
		}
	}

	first := seed("first seed")
	noKeys("first seed", first)
	for _, d := range demoNames {
		if want := "key       " + demoKeyPath(d.name) + " version 1 written\n"; !strings.Contains(first, want) {
			t.Errorf("first seed lacks %q:\n%s", want, first)
		}
	}
	if !strings.Contains(first, "key       "+demoAdminKeyPath+" version 1 written\n") || strings.Count(first, "updated   deployments") != len(demoNames) {
		t.Fatalf("first seed:\n%s", first)
	}

	resp, err := admin.call(ctx, http.MethodGet, "/deployments?limit=100", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Items []policy.Deployment `json:"items"`
	}
	if err := json.Unmarshal(resp.body, &list); err != nil || len(list.Items) != len(demoNames) {
		t.Fatalf("%d deployments (%v), want %d", len(list.Items), err, len(demoNames))
	}
	for _, d := range list.Items {
		want := policy.Deployment{KeySource: policy.KeySourceVault, KeyPath: "secret/portcullis/" + d.Name, Minter: policy.MinterVaultVersion,
			RotationIntervalDays: 30, RotationOverlapHours: 0.05}
		if d.Provider == "openai" {
			want.Minter, want.AdminKeyPath, want.AdminProjectID = policy.MinterOpenAIAdmin, "secret/portcullis-admin/openai", "proj_demo"
		}
		got := policy.Deployment{KeySource: d.KeySource, KeyPath: d.KeyPath, Minter: d.Minter, RotationIntervalDays: d.RotationIntervalDays,
			RotationOverlapHours: d.RotationOverlapHours, AdminKeyPath: d.AdminKeyPath, AdminProjectID: d.AdminProjectID}
		if !reflect.DeepEqual(got, want) {
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
		for _, name := range []string{"anthropic-eu", "anthropic-us", "ollama-eu"} { // by name
			want = append(want, vaultKey(t, v, demoKeyPath(name), 0))
		}
		if strings.Join(listed, "\n") != strings.Join(want, "\n") {
			t.Fatalf("%s: the accept-keys file lists %d keys, not the current ones of anthropic-eu, anthropic-us and ollama-eu", what, len(listed))
		}
		for _, f := range []string{acceptFile, adminFile} {
			if info, err := os.Stat(f); err != nil || info.Mode().Perm() != 0o600 {
				t.Fatalf("%s: %s: %v; want mode 0600", what, f, err)
			}
		}
		adminKey, err := os.ReadFile(adminFile)
		if err != nil || strings.TrimSpace(string(adminKey)) != vaultKey(t, v, demoAdminKeyPath, 0) || !strings.HasPrefix(string(adminKey), "sk-admin-dev-") {
			t.Fatalf("%s: the admin key file does not hold the admin key in Vault (%v)", what, err)
		}
	}
	checkAccepted("first seed")
	openAIKey := vaultKey(t, v, demoKeyPath("openai-eu"), 0)

	second := seed("second seed")
	if strings.Contains(second, "updated") || strings.Contains(second, " written\n") {
		t.Fatalf("second seed changed something:\n%s", second)
	}
	checkAccepted("second seed")
	if vaultKey(t, v, demoKeyPath("openai-eu"), 0) != openAIKey {
		t.Fatal("second seed replaced openai-eu's key")
	}

	// An operator rotates anthropic-eu to version 2.
	type versions struct {
		Old int `json:"old_version"`
		New int `json:"new_version"`
	}
	// rotate asks for a rotation to the operator's newest version, want. The rotator
	// also adopts a version an operator wrote by itself, whenever a check runs (a
	// policy change nudges one): when it got there first, the rotation is a 409 and
	// the history shows want in use, which is the same outcome.
	rotate := func(want int) {
		t.Helper()
		resp, err := admin.try(ctx, http.MethodPost, "/secrets/rotate", map[string]string{"provider": "anthropic", "deployment": "anthropic-eu"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.status == http.StatusConflict {
			resp, err = admin.call(ctx, http.MethodGet, "/secrets/history?deployment=anthropic-eu", nil, nil)
			if err != nil {
				t.Fatal(err)
			}
		} else if resp.status/100 != 2 {
			t.Fatalf("POST /secrets/rotate: status %d: %s", resp.status, resp.body)
		}
		var rotated struct {
			Data []versions `json:"data"`
		}
		if err := json.Unmarshal(resp.body, &rotated); err != nil {
			t.Fatal(err)
		}
		if len(rotated.Data) == 0 || rotated.Data[0].New != want {
			t.Fatalf("after rotating anthropic-eu: %+v (status %d), want version %d in use", rotated.Data, resp.status, want)
		}
	}
	// The rotator records each new deployment's baseline (the version in use) soon
	// after it appears; the operator's version 2 must come after it, or version 2 is
	// the baseline and there is nothing to rotate to.
	waitfor.Within(t, 15*time.Second, "anthropic-eu's baseline in the rotation history", func() bool {
		resp, err := admin.call(ctx, http.MethodGet, "/secrets/history?deployment=anthropic-eu", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		var history struct {
			Data []json.RawMessage `json:"data"`
		}
		return json.Unmarshal(resp.body, &history) == nil && len(history.Data) > 0
	})
	writeVaultKey(t, v, demoKeyPath("anthropic-eu"), "dev-anthropic-eu-operator-2")
	rotate(2)

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
	rotate(3)
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
