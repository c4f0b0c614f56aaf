package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/vault/api"

	"github.com/portcullis-gw/portcullis/shared/policy"
	"github.com/portcullis-gw/portcullis/vaultclient"
)

// The demo's keys in Vault. make run's demo (deploy/demo/gateway.yaml) creates the demo with the key file
// (key_source file); with a Vault, seedVault then moves every demo deployment (each
// one whose base URL is on the mock upstream) to key_source vault: its key is the
// field api_key of the KV v2 secret demoKeyPath(name). The mock upstream stands in
// for the providers:
//   - the openai deployments mint their keys through the mock's OpenAI admin API
//     (minter openai_admin, with the admin key at demoAdminKeyPath), so the rotator
//     creates and deletes them with no manual step;
//   - the others (minter vault_version) use keys an operator writes to Vault, which
//     the mock accepts when they are listed in its accept-keys file.
//
// The mock checks every request's key once it accepts any, so in this mode ollama-eu
// has a key too, as a self-hosted model behind an authenticating proxy would.
//
// This writes to Vault with a root token, which is why it lives here, in the dev
// stack, and not in the production admin CLI.
const (
	demoKeyPrefix    = "secret/portcullis/"
	demoAdminKeyPath = "secret/portcullis-admin/openai"
	demoAdminProject = "proj_demo"
	demoRotationDays = 30
	// demoOverlapHours is 3 minutes, so that make run shows an overlap end and the
	// old key retired; the seed document's production value is 2 hours.
	demoOverlapHours = 0.05
)

// maxCatchUp bounds how many versions the seed writes to bring a fresh secret up to
// the version the rotation history last used (see ensureDemoKey).
const maxCatchUp = 1000

// vaultSeed says where seedVault finds Vault and writes the mock's key files.
type vaultSeed struct {
	addr, tokenFile string
	// upstreamURL is the mock's base URL: the demo deployments' base URLs start
	// with <upstreamURL>/d/.
	upstreamURL string
	// acceptKeysFile and adminKeyFile are the mock's -accept-keys-file and
	// -admin-key-file.
	acceptKeysFile, adminKeyFile string
	// report receives one line per step; never a key.
	report io.Writer
}

// demoKeyPath is the Vault KV v2 path of deployment's key.
func demoKeyPath(deployment string) string { return demoKeyPrefix + deployment }

// demoMinter is where a deployment of provider gets its new keys when it rotates.
func demoMinter(provider string) string {
	if provider == "openai" {
		return policy.MinterOpenAIAdmin
	}
	return policy.MinterVaultVersion
}

// demoVault is what the seed needs of Vault.
type demoVault interface {
	ReadKVMeta(ctx context.Context, keyPath string) (vaultclient.KVMeta, error)
	ReadKV(ctx context.Context, keyPath string, version int) (vaultclient.KVKey, error)
	WriteKV(ctx context.Context, keyPath, key string, cas int) (int, error)
}

var _ demoVault = (*vaultclient.Client)(nil)

// seedVault makes sure every demo deployment has a usable key in Vault, writes the
// mock's admin key file and its copy in Vault, rewrites the mock's accept-keys file
// with the current key of each vault_version deployment, and only then moves the
// deployments to key_source vault, so that the rotator never sees a Vault-keyed
// deployment without its secret. Keys never appear in its output.
func seedVault(ctx context.Context, admin *adminClient, o vaultSeed) error {
	v, err := vaultclient.New(ctx, vaultclient.Config{Addr: o.addr, Auth: vaultclient.AuthToken, TokenFile: o.tokenFile},
		slog.New(slog.DiscardHandler))
	if err != nil {
		return fmt.Errorf("vault at %s: %w", o.addr, err)
	}
	defer v.Close()

	deps, err := demoDeployments(ctx, admin, o.upstreamURL)
	if err != nil {
		return err
	}
	var accepted strings.Builder
	accepted.WriteString(acceptKeysHeader)
	var names []string
	for _, d := range deps {
		path := demoKeyPath(d.Name)
		floor, err := lastKeyVersion(ctx, admin, d.Name)
		if err != nil {
			return fmt.Errorf("rotation history of %s: %w", d.Name, err)
		}
		k, wrote, err := ensureDemoKey(ctx, v, path, "dev-"+d.Name+"-", floor)
		if err != nil {
			return err
		}
		reportKey(o.report, path, k.Version, wrote)
		if demoMinter(d.Provider) == policy.MinterVaultVersion {
			fmt.Fprintf(&accepted, "# %s: %s version %d\n%s\n", d.Name, path, k.Version, k.Key)
			names = append(names, d.Name)
		}
	}
	if err := seedAdminKey(ctx, v, o.adminKeyFile, o.report); err != nil {
		return err
	}
	if err := writeFileAtomic(o.acceptKeysFile, []byte(accepted.String())); err != nil {
		return fmt.Errorf("accept-keys file: %w", err)
	}
	fmt.Fprintf(o.report, "keys      %s: the mock accepts the keys of %s\n", o.acceptKeysFile, strings.Join(names, ", "))
	for _, d := range deps {
		changed, err := admin.reconcile(ctx, "/deployments/"+url.PathEscape(d.Name), vaultKeySettings(d))
		if err != nil {
			return fmt.Errorf("move %s to key_source vault: %w", d.Name, err)
		}
		what := "unchanged"
		if changed {
			what = "updated"
		}
		fmt.Fprintf(o.report, "%-9s deployments %s (key_source vault)\n", what, d.Name)
	}
	return nil
}

// demoDeployment is what seedVault needs of a deployment.
type demoDeployment struct {
	Name     string `json:"name"`
	Provider string `json:"provider"`
	BaseURL  string `json:"base_url"`
}

// maxListPages bounds the pages demoDeployments reads.
const maxListPages = 100

// demoDeployments lists the deployments on the mock upstream at upstreamURL, by name.
func demoDeployments(ctx context.Context, admin *adminClient, upstreamURL string) ([]demoDeployment, error) {
	prefix := strings.TrimRight(upstreamURL, "/") + "/d/"
	var deps []demoDeployment
	cursor := ""
	for range maxListPages {
		q := url.Values{"limit": {"500"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		resp, err := admin.call(ctx, http.MethodGet, "/deployments?"+q.Encode(), nil, nil)
		if err != nil {
			return nil, err
		}
		var page struct {
			Items      []demoDeployment `json:"items"`
			NextCursor *string          `json:"next_cursor"`
		}
		if err := json.Unmarshal(resp.body, &page); err != nil {
			return nil, fmt.Errorf("list deployments: decode: %w", err)
		}
		for _, d := range page.Items {
			if strings.HasPrefix(d.BaseURL, prefix) {
				deps = append(deps, d)
			}
		}
		if page.NextCursor == nil || *page.NextCursor == "" || *page.NextCursor == cursor {
			break
		}
		cursor = *page.NextCursor
	}
	if len(deps) == 0 {
		return nil, fmt.Errorf("no deployment has a base URL under %s: was the demo seeded?", prefix)
	}
	sort.Slice(deps, func(i, j int) bool { return deps[i].Name < deps[j].Name })
	return deps, nil
}

// vaultKeySettings are the key settings of d with its key in Vault.
func vaultKeySettings(d demoDeployment) map[string]any {
	b := map[string]any{
		"key_source":             policy.KeySourceVault,
		"key_path":               demoKeyPath(d.Name),
		"minter":                 demoMinter(d.Provider),
		"admin_key_path":         nil,
		"admin_project_id":       nil,
		"rotation_interval_days": demoRotationDays,
		"rotation_overlap_hours": demoOverlapHours,
	}
	if demoMinter(d.Provider) == policy.MinterOpenAIAdmin {
		b["admin_key_path"], b["admin_project_id"] = demoAdminKeyPath, demoAdminProject
	}
	return b
}

const acceptKeysHeader = `# The keys the mock upstream accepts (its -accept-keys-file), one a line; it re-reads
# this file when it changes. Written by make run (tests/cmd/portcullis-dev) with the
# current Vault key of each vault_version deployment. The openai deployments' keys are
# minted by the mock's admin API instead. Add a line to issue a key; remove one to
# revoke it.
`

// reportKey says what the seed did with the key at path, never the key.
func reportKey(w io.Writer, path string, version int, wrote bool) {
	what := "kept"
	if wrote {
		what = "written"
	}
	fmt.Fprintf(w, "key       %s version %d %s\n", path, version, what)
}

// lastKeyVersion is the highest key version deployment's latest rotation names, 0
// when it has none: the version the rotator believes is in use.
func lastKeyVersion(ctx context.Context, admin *adminClient, deployment string) (int, error) {
	resp, err := admin.call(ctx, http.MethodGet, "/secrets/history?"+url.Values{"deployment": {deployment}, "limit": {"1"}}.Encode(), nil, nil)
	if err != nil {
		return 0, err
	}
	var history struct {
		Data []struct {
			OldVersion *int `json:"old_version"`
			NewVersion *int `json:"new_version"`
		} `json:"data"`
	}
	if err := json.Unmarshal(resp.body, &history); err != nil {
		return 0, fmt.Errorf("decode: %w", err)
	}
	v := 0
	for _, r := range history.Data {
		for _, p := range []*int{r.OldVersion, r.NewVersion} {
			if p != nil {
				v = max(v, *p)
			}
		}
	}
	return v, nil
}

// ensureDemoKey returns the key at path, writing a new random one (named by prefix)
// when the secret is missing, its current version is revoked or gone, or it is older
// than floor. The last happens when Vault is new (a dev Vault keeps nothing between
// runs) but the dev database remembers rotations to version floor: the new key is
// then written until its version reaches floor, so that the rotator's idea of the
// version in use holds, and a version an operator writes next is newer than it. It
// reports whether it wrote.
func ensureDemoKey(ctx context.Context, v demoVault, path, prefix string, floor int) (vaultclient.KVKey, bool, error) {
	meta, err := v.ReadKVMeta(ctx, path)
	if err != nil && !errors.Is(err, api.ErrSecretNotFound) {
		return vaultclient.KVKey{}, false, err
	}
	if cur := meta.Current; cur > 0 && cur >= floor && !meta.Revoked[cur] && !meta.Gone[cur] {
		k, err := v.ReadKV(ctx, path, cur)
		if err == nil {
			return k, false, nil
		}
		if !errors.Is(err, vaultclient.ErrNoKey) {
			return vaultclient.KVKey{}, false, err
		}
	}
	if floor-meta.Current > maxCatchUp {
		return vaultclient.KVKey{}, false, fmt.Errorf("%s is at version %d but the rotation history names version %d: "+
			"more than %d versions apart; is this the Vault the dev database was used with?", path, meta.Current, floor, maxCatchUp)
	}
	k := vaultclient.KVKey{Key: randomKey(prefix), Version: meta.Current}
	for {
		if k.Version, err = v.WriteKV(ctx, path, k.Key, k.Version); err != nil {
			return vaultclient.KVKey{}, false, err
		}
		if k.Version >= floor {
			return k, true, nil
		}
	}
}

// seedAdminKey makes file hold the mock's OpenAI admin key (a new random one when it
// is missing or empty) and Vault's demoAdminKeyPath the same key.
func seedAdminKey(ctx context.Context, v demoVault, file string, report io.Writer) error {
	key, err := readOrCreateKey(file, "sk-admin-dev-")
	if err != nil {
		return fmt.Errorf("admin key file: %w", err)
	}
	cur, err := v.ReadKV(ctx, demoAdminKeyPath, 0)
	switch {
	case err == nil && cur.Key == key:
		reportKey(report, demoAdminKeyPath, cur.Version, false)
		return nil
	case err != nil && !errors.Is(err, api.ErrSecretNotFound) && !errors.Is(err, vaultclient.ErrNoKey):
		return err
	}
	ver, err := v.WriteKV(ctx, demoAdminKeyPath, key, -1)
	if err != nil {
		return err
	}
	reportKey(report, demoAdminKeyPath, ver, true)
	return nil
}

// readOrCreateKey returns the trimmed content of file, first writing a new random key
// named by prefix into it (mode 0600) when it is missing or empty.
func readOrCreateKey(file, prefix string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if key := strings.TrimSpace(string(b)); key != "" {
		return key, os.Chmod(file, 0o600)
	}
	key := randomKey(prefix)
	return key, writeFileAtomic(file, []byte(key+"\n"))
}

// randomKey returns prefix followed by 48 random hex digits.
func randomKey(prefix string) string {
	var b [24]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error
	return prefix + hex.EncodeToString(b[:])
}

// writeFileAtomic replaces path with data, mode 0600, by renaming a temporary file
// over it, so that a reader (the mock re-reads its accept-keys file when it changes)
// never sees half of it.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after the rename, there is nothing left to remove
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
