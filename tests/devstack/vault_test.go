package devstack

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/shared/vaulttest"
	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

// TestMakeRunWithVault runs make run against a real Vault (VAULT_ADDR and
// VAULT_TOKEN): every deployment takes its key from Vault, the mock accepts only the
// valid keys, and the README's rotate and revoke commands work under traffic with no
// failed request, while the keys they replace stop working at the mock, and keep
// working when the rotation's overlap ends after the revocation.
func TestMakeRunWithVault(t *testing.T) {
	v := vaulttest.Start(t)
	env := []string{"VAULT_ADDR=" + v.Addr, "VAULT_TOKEN=" + v.Token,
		"PORTCULLIS_ROTATION_CHECK_INTERVAL=1s"} // the control plane's: ended overlaps are retired within a second
	if v.External {
		env = append(env, "PORTCULLIS_DEV_VAULT_ALLOW_REMOTE=true") // a throwaway Vault by contract (docs/vault-dev.md)
	}
	d := startDevstack(t, env...)
	printed := d.out.String()
	for _, want := range []string{"devstack: Vault: VAULT_ADDR, " + v.Addr, "  Vault           " + v.Addr,
		"bin/portcullis secrets rotate --provider openai --deployment openai-eu"} {
		if !strings.Contains(printed, want) {
			t.Fatalf("make run did not print %q:\n%s", want, printed)
		}
	}
	if strings.Contains(printed, v.Token) {
		t.Fatal("make run printed the Vault token")
	}

	// Every deployment answers with its key from Vault, though the mock checks keys.
	eu, us := d.url("PORTCULLIS_DEV_EU_LISTEN"), d.url("PORTCULLIS_DEV_US_LISTEN")
	premium, moltbot := readToken(t, d.dataDir, "premium-app"), readToken(t, d.dataDir, "moltbot-agent-07")
	for _, c := range []struct{ base, token, model, deployment string }{
		{eu, moltbot, "gpt-4o-mini", "openai-eu"},
		{us, premium, "gpt-4o", "openai-us"},
		{us, premium, "claude-3-5-sonnet", "anthropic-us"},
		{eu, premium, "llama3-70b", "ollama-eu"},
	} {
		resp, body := chat(t, c.base, c.token, c.model)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Portcullis-Deployment") != c.deployment {
			t.Fatalf("%s from %s: status %d deployment %q, want 200 from %s: %s",
				c.model, c.base, resp.StatusCode, resp.Header.Get("X-Portcullis-Deployment"), c.deployment, body)
		}
	}
	mock := d.url("PORTCULLIS_MOCK_LISTEN")
	if status := mockChat(t, mock, "openai-eu", "sk-not-a-key-of-the-demo"); status != http.StatusUnauthorized {
		t.Fatalf("the mock answered %d to a key it never issued, want 401", status)
	}

	var status struct {
		Data []struct {
			Deployment string `json:"deployment"`
			KeySource  string `json:"key_source"`
			Minter     string `json:"minter"`
			Version    *int   `json:"version"`
		} `json:"data"`
	}
	decodeJSON(t, d.portcullis("secrets", "status"), &status)
	minters := map[string]string{}
	for _, s := range status.Data {
		if s.KeySource != "vault" {
			t.Fatalf("secrets status: %s has key_source %q", s.Deployment, s.KeySource)
		}
		minters[s.Deployment] = s.Minter
	}
	want := map[string]string{"openai-us": "openai_admin", "openai-eu": "openai_admin",
		"anthropic-us": "vault_version", "anthropic-eu": "vault_version", "ollama-eu": "vault_version"}
	if len(minters) != len(want) {
		t.Fatalf("secrets status lists %v, want %v", minters, want)
	}
	for dep, m := range want {
		if minters[dep] != m {
			t.Fatalf("secrets status: %s has minter %q, want %q", dep, minters[dep], m)
		}
	}

	// Rotate and revoke openai-eu's key while moltbot-agent-07 (residency eu: openai-eu
	// only) and premium-app send requests. The rotation's overlap is cut to 7.2 s, so
	// that it ends, and its old key is retired, after the revocation.
	d.portcullis("deployments", "update", "openai-eu", "--json", `{"rotation_overlap_hours":0.002}`)
	traffic := startTraffic(t, []trafficSource{
		{eu, moltbot, "gpt-4o-mini", 500 * time.Millisecond}, // its tier allows 60 a minute
		{us, premium, "gpt-4o", 100 * time.Millisecond},
	})
	before := vaultKey(t, v, "openai-eu")
	rotated := d.rotations("secrets", "rotate", "--provider", "openai", "--deployment", "openai-eu")
	if len(rotated) != 1 || rotated[0].NewVersion <= rotated[0].OldVersion {
		t.Fatalf("secrets rotate: %+v, want openai-eu on a newer version", rotated)
	}
	minted := vaultKey(t, v, "openai-eu")
	if minted == before {
		t.Fatal("secrets rotate left openai-eu's key as it was")
	}
	for key, what := range map[string]string{before: "the previous key (overlap)", minted: "the minted key"} {
		if status := mockChat(t, mock, "openai-eu", key); status != http.StatusOK {
			t.Fatalf("the mock answered %d to %s, want 200", status, what)
		}
	}
	traffic.waitServed(t, "openai-eu", 2)

	revoked := d.rotations("secrets", "revoke", "--provider", "openai", "--reason", "devstack test: suspected leak")
	if len(revoked) != 2 {
		t.Fatalf("secrets revoke: %+v, want openai-us and openai-eu", revoked)
	}
	successor := vaultKey(t, v, "openai-eu")
	for key, what := range map[string]string{before: "the key before the rotation", minted: "the revoked key"} {
		if status := mockChat(t, mock, "openai-eu", key); status != http.StatusUnauthorized {
			t.Fatalf("the mock answered %d to %s, want 401", status, what)
		}
	}
	if status := mockChat(t, mock, "openai-eu", successor); status != http.StatusOK {
		t.Fatalf("the mock answered %d to the successor key, want 200", status)
	}
	traffic.waitServed(t, "openai-eu", 2)

	// The rotation's overlap ends: the rotator retires the key it replaced, and the
	// successor of the revocation stays in use.
	var history struct {
		Data []struct {
			Kind      string     `json:"kind"`
			RetiredAt *time.Time `json:"retired_at"`
		} `json:"data"`
	}
	waitfor.Within(t, 30*time.Second, "the rotation's overlap ended and retired", func() bool {
		history.Data = nil
		decodeJSON(t, d.portcullis("secrets", "history", "--deployment", "openai-eu", "--limit", "2"), &history)
		return len(history.Data) == 2 && history.Data[1].Kind == "rotated" && history.Data[1].RetiredAt != nil
	})
	if status := mockChat(t, mock, "openai-eu", successor); status != http.StatusOK {
		t.Fatalf("the mock answered %d to the successor key after the overlap ended, want 200", status)
	}
	traffic.waitServed(t, "openai-eu", 2)
	traffic.stop(t)

	// An operator rotates anthropic-us (vault_version) as the README says: the mock
	// accepts the new key, it is written to Vault, then rotated to.
	control := d.url("PORTCULLIS_MOCK_CONTROL_LISTEN")
	newKey := "dev-anthropic-us-operator-2"
	if code, body := send(t, http.MethodPost, control+"/mock/keys", `{"accept":"`+newKey+`"}`); code != http.StatusOK {
		t.Fatalf("POST /mock/keys: status %d: %s", code, body)
	}
	if code, _ := v.Do(t, http.MethodPost, "secret/data/portcullis/anthropic-us", map[string]any{"data": map[string]any{"api_key": newKey}}); code != http.StatusOK {
		t.Fatalf("vault write: status %d", code)
	}
	// The rotator also looks for versions an operator wrote (every 30 s, and when
	// nudged): when it got there first, the command finds nothing newer, and the
	// history shows the rotation it detected.
	out, stderr, err := d.tryPortcullis("secrets", "rotate", "--provider", "anthropic", "--deployment", "anthropic-us")
	switch {
	case err == nil:
		var rot struct {
			Data []rotation `json:"data"`
		}
		if decodeJSON(t, out, &rot); len(rot.Data) != 1 || rot.Data[0].NewVersion != 2 {
			t.Fatalf("secrets rotate anthropic-us: %+v, want version 2", rot.Data)
		}
	case strings.Contains(stderr, "no_new_key_version"):
		var history struct {
			Data []struct {
				Trigger    string `json:"trigger"`
				NewVersion *int   `json:"new_version"`
			} `json:"data"`
		}
		decodeJSON(t, d.portcullis("secrets", "history", "--deployment", "anthropic-us", "--limit", "1"), &history)
		if len(history.Data) != 1 || history.Data[0].Trigger != "detected" || history.Data[0].NewVersion == nil || *history.Data[0].NewVersion != 2 {
			t.Fatalf("secrets rotate anthropic-us found no newer version, and the history shows no detected rotation to version 2: %+v", history.Data)
		}
	default:
		t.Fatalf("secrets rotate anthropic-us: %v\n%s", err, stderr)
	}
	if resp, body := chat(t, us, premium, "claude-3-5-sonnet"); resp.StatusCode != http.StatusOK {
		t.Fatalf("claude-3-5-sonnet after the rotation: status %d: %s", resp.StatusCode, body)
	}

	for _, k := range []string{before, minted, successor, newKey, v.Token} {
		if strings.Contains(d.out.String(), k) {
			t.Fatal("make run printed a key or the Vault token")
		}
	}
	d.stop()
}

// portcullis runs bin/portcullis against the stack and returns its standard output.
func (d *devstack) portcullis(args ...string) string {
	d.t.Helper()
	out, stderr, err := d.tryPortcullis(args...)
	if err != nil {
		d.t.Fatalf("portcullis %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return out
}

// tryPortcullis runs bin/portcullis against the stack and returns what it printed
// and how it ended.
func (d *devstack) tryPortcullis(args ...string) (stdout, stderr string, err error) {
	d.t.Helper()
	token, err := os.ReadFile(filepath.Join(d.dataDir, "dev-admin-token"))
	if err != nil {
		d.t.Fatalf("the dev administrator's token: %v", err)
	}
	cmd := exec.Command(filepath.Join(d.root, "bin", "portcullis"), args...)
	cmd.Env = append(cmd.Environ(), "PORTCULLIS_ADMIN_URL="+d.url("PORTCULLIS_DEV_CONTROLPLANE_LISTEN"), "PORTCULLIS_DATA_DIR="+d.dataDir,
		"PORTCULLIS_ADMIN_TOKEN="+strings.TrimSpace(string(token)))
	var errBuf strings.Builder
	cmd.Stderr = &errBuf
	out, err := cmd.Output()
	return string(out), errBuf.String(), err
}

// rotation is one row of a secrets rotate or revoke answer.
type rotation struct {
	Deployment string `json:"deployment"`
	OldVersion int    `json:"old_version"`
	NewVersion int    `json:"new_version"`
}

// rotations runs a secrets rotate or revoke command and returns the rows it made.
func (d *devstack) rotations(args ...string) []rotation {
	d.t.Helper()
	var out struct {
		Data []rotation `json:"data"`
	}
	decodeJSON(d.t, d.portcullis(args...), &out)
	return out.Data
}

func decodeJSON(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
}

// vaultKey is the current key of deployment in Vault.
func vaultKey(t *testing.T, v *vaulttest.Vault, deployment string) string {
	t.Helper()
	status, resp := v.Do(t, http.MethodGet, "secret/data/portcullis/"+deployment, nil)
	data, _ := resp["data"].(map[string]any)
	inner, _ := data["data"].(map[string]any)
	key, _ := inner["api_key"].(string)
	if status != http.StatusOK || key == "" {
		t.Fatalf("vault: no key for %s (status %d)", deployment, status)
	}
	return key
}

// mockChat sends a chat completion straight to deployment on the mock with key, as
// a leaked key would be used, and returns the status.
func mockChat(t *testing.T, mock, deployment, key string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, mock+"/d/"+deployment+"/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// trafficSource sends one model request to base with token every period.
type trafficSource struct {
	base, token, model string
	period             time.Duration
}

// traffic sends requests until stopped and records how each was answered.
type traffic struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex // guards the fields below
	failures []string
	served   map[string]int // by deployment
}

func startTraffic(t *testing.T, sources []trafficSource) *traffic {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tr := &traffic{cancel: cancel, served: map[string]int{}}
	for _, src := range sources {
		tr.wg.Go(func() {
			tick := time.NewTicker(src.period)
			defer tick.Stop()
			for {
				tr.send(ctx, src)
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		})
	}
	t.Cleanup(tr.halt)
	return tr
}

func (tr *traffic) send(ctx context.Context, src trafficSource) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, src.base+"/v1/chat/completions",
		strings.NewReader(`{"model":"`+src.model+`","messages":[{"role":"user","content":"Hello"}]}`))
	if err == nil {
		req.Header.Set("Authorization", "Bearer "+src.token)
		req.Header.Set("Content-Type", "application/json")
	}
	var resp *http.Response
	if err == nil {
		resp, err = http.DefaultClient.Do(req)
	}
	if ctx.Err() != nil {
		return // stopped: an interrupted request is not a failure
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if err != nil {
		tr.failures = append(tr.failures, src.model+": "+err.Error())
		return
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		tr.failures = append(tr.failures, src.model+": status "+resp.Status)
		return
	}
	tr.served[resp.Header.Get("X-Portcullis-Deployment")]++
}

// waitServed waits until n more requests were served by deployment.
func (tr *traffic) waitServed(t *testing.T, deployment string, n int) {
	t.Helper()
	tr.mu.Lock()
	target := tr.served[deployment] + n
	tr.mu.Unlock()
	waitfor.Within(t, 20*time.Second, "requests served by "+deployment, func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return tr.served[deployment] >= target
	})
}

func (tr *traffic) halt() {
	tr.cancel()
	tr.wg.Wait()
}

// stop ends the traffic and fails the test if any request failed.
func (tr *traffic) stop(t *testing.T) {
	t.Helper()
	tr.halt()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.failures) > 0 {
		t.Fatalf("%d requests failed during the rotation and the revocation (served: %v): %v", len(tr.failures), tr.served, tr.failures)
	}
	t.Logf("requests served during the rotation and the revocation: %v", tr.served)
}
