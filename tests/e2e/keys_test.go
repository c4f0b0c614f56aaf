package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/portcullis-gw/portcullis/shared/alerts"
	"github.com/portcullis-gw/portcullis/shared/natsauth"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/vaulttest"
	"github.com/portcullis-gw/portcullis/shared/waitfor"
	"github.com/portcullis-gw/portcullis/tests/mockupstream"
)

// writeKey writes key as the next version of the Vault secret at path, only if its
// current version is cas, and returns the new version.
func writeKey(t *testing.T, v *vaulttest.Vault, path, key string, cas int) int {
	t.Helper()
	status, resp := v.Do(t, "POST", "secret/data/"+strings.TrimPrefix(path, "secret/"),
		map[string]any{"data": map[string]any{"api_key": key}, "options": map[string]any{"cas": cas}})
	if status != http.StatusOK {
		t.Fatalf("write %s: %d %v", path, status, resp)
	}
	return int(resp["data"].(map[string]any)["version"].(float64))
}

// rotate asks the control plane to rotate the provider's keys (or one deployment's)
// to the version just written, and returns when each rotated deployment's overlap
// ends. The rotator may have noticed the new version on its own first (a policy
// change makes it look); then the answer is 409 no_new_key_version and the history
// holds that rotation.
func (s *stack) rotate(t *testing.T, provider, deployment string, deployments ...string) map[string]time.Time {
	t.Helper()
	body := map[string]any{"provider": provider, "reason": "test"}
	if deployment != "" {
		body["deployment"] = deployment
	}
	var raw json.RawMessage
	status, _ := s.admin(t, "POST", "/secrets/rotate", body, &raw)
	if status != http.StatusOK && !(status == http.StatusConflict && strings.Contains(string(raw), "no_new_key_version")) {
		t.Fatalf("rotate: %d %s", status, raw)
	}
	out := map[string]time.Time{}
	for _, d := range deployments {
		var hist struct {
			Data []struct {
				Kind         string    `json:"kind"`
				NewVersion   *int      `json:"new_version"`
				OldVersion   *int      `json:"old_version"`
				OverlapUntil time.Time `json:"overlap_until"`
			} `json:"data"`
		}
		s.admin(t, "GET", "/secrets/history?limit=1&deployment="+d, nil, &hist)
		if len(hist.Data) != 1 || hist.Data[0].Kind != "rotated" || hist.Data[0].OldVersion == nil || *hist.Data[0].NewVersion <= *hist.Data[0].OldVersion {
			t.Fatalf("%s: last history row %+v is not a rotation", d, hist.Data)
		}
		out[d] = hist.Data[0].OverlapUntil
	}
	return out
}

// load sends chat requests at rate per second, alternating between the eu worker
// (as an eu client) and the us worker (as a client without residency), until stop is
// closed or max requests were sent. It records every answer that is not a 200.
type load struct {
	sent, ok atomic.Int64
	mu       sync.Mutex
	failures []string
	wg       sync.WaitGroup
}

func startLoad(s *stack, tokens map[string]string, rate int, max int64, stop <-chan struct{}) *load {
	l := &load{}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}`
	l.wg.Go(func() {
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for n := int64(0); n < max; n++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			worker := []string{"eu", "us"}[n%2]
			id := fmt.Sprintf("load-%s-%d", worker, n)
			l.sent.Add(1)
			l.wg.Go(func() {
				req, _ := http.NewRequest("POST", "http://"+s.dp[worker].Addr()+"/v1/chat/completions", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+tokens[worker])
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-Request-Id", id)
				resp, err := client.Do(req)
				if err != nil {
					l.fail(id + ": " + err.Error())
					return
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					l.fail(fmt.Sprintf("%s: %d %s", id, resp.StatusCode, raw))
					return
				}
				l.ok.Add(1)
			})
		}
	})
	return l
}

func (l *load) fail(msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failures = append(l.failures, msg)
}

// portcullisCLI builds the portcullis CLI once per test binary.
var portcullisCLI = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "portcullis-cli")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "portcullis")
	cmd := exec.Command("go", "build", "-o", bin, "./controlplane/cmd/portcullis")
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build portcullis: %v\n%s", err, out)
	}
	return bin, nil
})

// TestKeyRotationUnderLoadAndEmergencyRevoke is the key custody acceptance run: two
// regions at a steady 200 requests/s. A rotation (a new Vault version, a two-key
// overlap at the upstream, then only the new key) fails no request, and after the
// overlap no request carries the old key. Then `portcullis secrets revoke` makes both
// workers stop using the revoked key within 1 s at the upstream, and the revocation
// is in the history and on PC_ALERTS. No key value reaches a log, /metrics, the
// admin API or a key-access event, and every key fetch is recorded.
func TestKeyRotationUnderLoadAndEmergencyRevoke(t *testing.T) {
	t.Parallel()
	v := vaulttest.Start(t)
	s := startStack(t, withVault(v), withLogs())
	stamp := fmt.Sprint(time.Now().UnixNano())
	keyOf := func(region string, version int) string { return fmt.Sprintf("canary-%s-%d-%s", region, version, stamp) }
	for _, region := range []string{"eu", "us"} {
		writeKey(t, v, s.keyPaths[region], keyOf(region, 1), 0)
		s.upstream[region].AcceptKey(keyOf(region, 1))
	}
	s.seed(t)
	for _, region := range []string{"eu", "us"} { // an overlap of 6 s, so the test sees it end
		s.patch(t, "/deployments/openai-"+region, map[string]any{"rotation_overlap_hours": 6.0 / 3600})
	}
	s.waitReady(t)
	tokens := map[string]string{"eu": s.limitedClient(t, "keys-eu", "eu", 0, 0, 0), "us": s.limitedClient(t, "keys-any", "", 0, 0, 0)}
	nc := s.natsConnect(t, natsauth.ControlPlane())
	alertCh := make(chan *nats.Msg, 16)
	sub, err := nc.ChanSubscribe(natsnames.AlertSubject(alerts.KindKeyRevoked, "openai"), alertCh)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	stop := make(chan struct{})
	l := startLoad(s, tokens, 200, 200*60, stop)
	time.Sleep(time.Second)

	// Rotation: an operator writes version 2, which the provider accepts from now on;
	// the rotate command starts the overlap, after which the provider drops version 1.
	for _, region := range []string{"eu", "us"} {
		writeKey(t, v, s.keyPaths[region], keyOf(region, 2), 1)
		s.upstream[region].AcceptKey(keyOf(region, 2))
	}
	ends := s.rotate(t, "openai", "", "openai-eu", "openai-us")
	overlapEnd := time.Time{}
	for _, region := range []string{"eu", "us"} {
		end := ends["openai-"+region]
		s.upstream[region].AcceptKeyUntil(keyOf(region, 1), end)
		if end.After(overlapEnd) {
			overlapEnd = end
		}
	}
	time.Sleep(time.Until(overlapEnd) + 500*time.Millisecond)
	afterOverlap := map[string]int{"eu": len(s.upstream["eu"].Requests()), "us": len(s.upstream["us"].Requests())}
	time.Sleep(time.Second)

	// Emergency revoke of version 2, with version 3 already written as its successor.
	// The provider keeps accepting version 2, so that the upstream shows when the
	// workers stop sending it.
	for _, region := range []string{"eu", "us"} {
		writeKey(t, v, s.keyPaths[region], keyOf(region, 3), 2)
		s.upstream[region].AcceptKey(keyOf(region, 3))
	}
	bin, err := portcullisCLI()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--admin-url", s.adminURL, "secrets", "revoke", "--provider", "openai", "--reason", "key_suspected_compromise")
	cmd.Env = append(os.Environ(), "PORTCULLIS_ADMIN_TOKEN="+s.adminToken)
	revokeStart := time.Now()
	out, err := cmd.CombinedOutput()
	revoked := time.Now()
	t.Logf("portcullis secrets revoke took %s", revoked.Sub(revokeStart).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("portcullis secrets revoke: %v\n%s", err, out)
	}
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	l.wg.Wait()

	// Zero failed requests through the rotation and the revocation.
	if len(l.failures) > 0 {
		t.Fatalf("%d of %d requests failed; first: %s", len(l.failures), l.sent.Load(), l.failures[0])
	}
	t.Logf("%d requests, all answered 200", l.ok.Load())
	for _, region := range []string{"eu", "us"} {
		reqs := s.upstream[region].Requests()
		old, revokedKey := mockupstream.Fingerprint(keyOf(region, 1)), mockupstream.Fingerprint(keyOf(region, 2))
		for _, r := range reqs[afterOverlap[region]:] {
			if r.KeyFingerprint == old {
				t.Fatalf("%s: a request after the overlap carried the old key", region)
			}
		}
		var lastRevoked time.Time
		for _, r := range reqs {
			if r.KeyFingerprint == revokedKey && r.At.After(lastRevoked) {
				lastRevoked = r.At
			}
		}
		if lag := lastRevoked.Sub(revoked); lag > time.Second {
			t.Fatalf("%s: the revoked key was still used %s after the revoke command returned", region, lag)
		} else {
			t.Logf("%s: last use of the revoked key %s after the revoke command started, %s after it returned",
				region, lastRevoked.Sub(revokeStart).Round(time.Millisecond), lag.Round(time.Millisecond))
		}
		if n := reqs[len(reqs)-1].KeyFingerprint; n != mockupstream.Fingerprint(keyOf(region, 3)) {
			t.Fatalf("%s: the last request did not carry the successor key", region)
		}
	}

	// The revocation is in the history and was alerted.
	var hist struct {
		Data []struct {
			Deployment, Kind, Reason, Actor string
		} `json:"data"`
	}
	s.admin(t, "GET", "/secrets/history", nil, &hist)
	revocations := 0
	for _, h := range hist.Data {
		if h.Kind == "revoked" && h.Reason == "key_suspected_compromise" {
			revocations++
		}
	}
	if revocations != 2 {
		t.Fatalf("history has %d revocations, want one per deployment: %+v", revocations, hist.Data)
	}
	select {
	case m := <-alertCh:
		a, err := alerts.Decode(m.Data)
		if err != nil || a.Severity != alerts.SeverityCritical || !strings.Contains(a.Message, "key_suspected_compromise") {
			t.Fatalf("alert %+v, %v", a, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no key_revoked alert on PC_ALERTS")
	}

	// Every worker's key fetches reached the control plane: at startup, on the
	// rotation and on the revocation, each with its path and version.
	var access struct {
		Data []struct {
			ActorID string `json:"actor_id"`
			Reason  string `json:"reason"`
			Version *int   `json:"version"`
			OK      bool   `json:"ok"`
		} `json:"data"`
	}
	var accessRaw json.RawMessage
	seen := map[string]bool{}
	defer func() {
		if t.Failed() {
			t.Logf("key-access events seen: %v", seen)
		}
	}()
	waitfor.Within(t, 10*time.Second, "key-access events of both workers", func() bool {
		s.admin(t, "GET", "/secrets/access?limit=500", nil, &accessRaw)
		if err := json.Unmarshal(accessRaw, &access); err != nil {
			t.Fatal(err)
		}
		for _, a := range access.Data {
			if a.OK && a.Version != nil {
				seen[a.ActorID+" "+a.Reason] = true
			}
		}
		for _, w := range []string{"e2e-eu", "e2e-us"} {
			for _, reason := range []string{"startup", "rotation", "revocation"} {
				if !seen[w+" "+reason] {
					return false
				}
			}
		}
		return true
	})

	// No key value anywhere: logs, /metrics, the admin API's answers, key-access events.
	var status json.RawMessage
	s.admin(t, "GET", "/secrets/status", nil, &status)
	places := map[string]string{"logs": s.logs.String(), "key access": string(accessRaw), "status": string(status), "cli": string(out)}
	for name, dp := range s.dp {
		places["metrics "+name] = metrics(t, dp.MetricsAddr())
	}
	secrets := map[string]string{"a key value": "canary-", "the Vault token": v.Token, "a client JWT": tokens["eu"], "the admin token": s.adminToken}
	for place, text := range places {
		for what, secret := range secrets {
			if strings.Contains(text, secret) {
				t.Errorf("%s appears in %s", what, place)
			}
		}
	}
}

// TestRefusedKeyIsRetriedOnceWithTheOtherKey: during an overlap the provider refuses
// the new key (not active there yet) but takes the old one; each request is retried
// exactly once, with the other key. With both keys refused, the 401 stands after
// exactly two attempts.
func TestRefusedKeyIsRetriedOnceWithTheOtherKey(t *testing.T) {
	t.Parallel()
	v := vaulttest.Start(t)
	s := startStack(t, withVault(v), withWorkers(worker{name: "eu", region: "eu"}))
	stamp := fmt.Sprint(time.Now().UnixNano())
	oldKey, newKey := "canary-old-"+stamp, "canary-new-"+stamp
	writeKey(t, v, s.keyPaths["eu"], oldKey, 0)
	writeKey(t, v, s.keyPaths["us"], "canary-us-"+stamp, 0)
	s.upstream["eu"].AcceptKey(oldKey)
	s.seed(t)
	s.waitReady(t)
	token := s.limitedClient(t, "retry-eu", "eu", 0, 0, 0)
	writeKey(t, v, s.keyPaths["eu"], newKey, 1)
	s.rotate(t, "openai", "openai-eu", "openai-eu")

	// attempts are the upstream calls of the request the gateway named id.
	attempts := func(id string) []string {
		var fps []string
		for _, r := range s.upstream["eu"].Requests() {
			if r.Header.Get("X-Request-Id") == id {
				fps = append(fps, r.KeyFingerprint)
			}
		}
		return fps
	}
	// Wait until the worker sends the new key (the rotation event reached it).
	waitfor.Within(t, 5*time.Second, "the worker to use the new key", func() bool {
		id := fmt.Sprintf("probe-%d", time.Now().UnixNano())
		r := s.callWithID(t, "eu", token, id, chatBody("gpt-4o-mini"))
		fps := attempts(r.Header.Get("X-Request-Id"))
		return r.Status == http.StatusOK && len(fps) == 2 && fps[0] == mockupstream.Fingerprint(newKey)
	})
	r := s.callWithID(t, "eu", token, "retry-1", chatBody("gpt-4o-mini"))
	want := []string{mockupstream.Fingerprint(newKey), mockupstream.Fingerprint(oldKey)}
	if got := attempts(r.Header.Get("X-Request-Id")); r.Status != http.StatusOK || strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("status %d, attempts %v, want exactly %v", r.Status, got, want)
	}
	s.upstream["eu"].RevokeKey(oldKey)
	r = s.callWithID(t, "eu", token, "retry-2", chatBody("gpt-4o-mini"))
	if got := attempts(r.Header.Get("X-Request-Id")); r.Status == http.StatusOK || len(got) != 2 {
		t.Fatalf("both keys refused: status %d, %d attempts, want a failure after exactly 2", r.Status, len(got))
	}
	if strings.Contains(string(r.Body), "canary") {
		t.Fatal("the error response carries a key")
	}
	if !strings.Contains(metrics(t, s.dp["eu"].MetricsAddr()), `portcullis_upstream_key_retries_total{deployment="openai-eu"}`) {
		t.Fatal("key retries are not in /metrics")
	}
}

// TestOpenAIAdminMinter: a deployment with minter openai_admin gets each new key from
// the provider's admin API (the mock speaks OpenAI's project service accounts), with
// the admin key read from Vault. A rotation mints a key that every request then
// carries; a revocation mints another and deletes the revoked key's account at the
// provider at once; each admin-key read is a control-plane key-access event.
func TestOpenAIAdminMinter(t *testing.T) {
	t.Parallel()
	v := vaulttest.Start(t)
	s := startStack(t, withVault(v), withWorkers(worker{name: "eu", region: "eu"}))
	stamp := fmt.Sprint(time.Now().UnixNano())
	adminKey, firstKey := "canary-admin-"+stamp, "canary-first-"+stamp
	adminPath := "secret/" + v.Unique("portcullis-admin/openai")
	writeKey(t, v, adminPath, adminKey, 0)
	writeKey(t, v, s.keyPaths["eu"], firstKey, 0)
	writeKey(t, v, s.keyPaths["us"], "canary-us-"+stamp, 0)
	up := s.upstream["eu"]
	up.AcceptKey(firstKey)
	up.SetAdminKey(adminKey)
	s.seed(t)
	s.patch(t, "/deployments/openai-eu", map[string]any{"minter": "openai_admin", "admin_key_path": adminPath,
		"admin_project_id": "proj_test", "rotation_overlap_hours": 1})
	s.waitReady(t)
	token := s.limitedClient(t, "minter-eu", "eu", 0, 0, 0)
	lastFingerprint := func() string {
		reqs := up.Requests()
		return reqs[len(reqs)-1].KeyFingerprint
	}

	// Rotate: a service account is created and its key serves.
	var rotated struct {
		Data []struct {
			ProviderKeyID string `json:"provider_key_id"`
			NewVersion    int    `json:"new_version"`
		} `json:"data"`
	}
	if status, _ := s.admin(t, "POST", "/secrets/rotate", map[string]any{"provider": "openai", "deployment": "openai-eu"}, &rotated); status != http.StatusOK || len(rotated.Data) != 1 || rotated.Data[0].NewVersion != 2 {
		t.Fatalf("rotate: %d %+v", status, rotated)
	}
	accounts := up.ServiceAccounts()
	if len(accounts) != 1 || accounts[0].ID != rotated.Data[0].ProviderKeyID || accounts[0].Project != "proj_test" {
		t.Fatalf("service accounts after the rotation: %+v (rotation %+v)", accounts, rotated.Data)
	}
	minted := accounts[0].KeyFingerprint
	waitfor.Within(t, 5*time.Second, "requests to carry the minted key", func() bool {
		r := s.call(t, "eu", token, "POST", "/v1/chat/completions", chatBody("gpt-4o-mini"))
		return r.Status == http.StatusOK && lastFingerprint() == minted
	})

	// Two rotations inside one overlap, then both overlaps end: retiring the first
	// must not delete the key the second minted, which is in use.
	s.patch(t, "/deployments/openai-eu", map[string]any{"rotation_overlap_hours": 2.0 / 3600})
	first := s.rotate(t, "openai", "openai-eu", "openai-eu")["openai-eu"]
	second := s.rotate(t, "openai", "openai-eu", "openai-eu")["openai-eu"]
	if !second.After(first.Add(-time.Second)) {
		t.Fatalf("overlaps end at %s and %s", first, second)
	}
	accounts = up.ServiceAccounts()
	inUse := accounts[len(accounts)-1].KeyFingerprint
	time.Sleep(time.Until(second) + 200*time.Millisecond)
	s.patch(t, "/deployments/openai-eu", map[string]any{"rotation_interval_days": 0}) // a policy change makes the rotator look now
	waitfor.Within(t, 5*time.Second, "the ended overlaps to be retired at the provider", func() bool {
		return len(up.ServiceAccounts()) == 1
	})
	if got := up.ServiceAccounts()[0].KeyFingerprint; got != inUse {
		t.Fatalf("retirement left key %s at the provider, want the one in use %s", got, inUse)
	}
	waitfor.Within(t, 5*time.Second, "requests to carry the key in use", func() bool {
		r := s.call(t, "eu", token, "POST", "/v1/chat/completions", chatBody("gpt-4o-mini"))
		return r.Status == http.StatusOK && lastFingerprint() == inUse
	})
	minted = inUse

	// Revoke: another key is minted, and the revoked one's account is deleted at the
	// provider at once, so the provider refuses it.
	s.mustAdmin(t, 200, "POST", "/secrets/revoke", map[string]any{"provider": "openai", "reason": "drill"})
	accounts = up.ServiceAccounts()
	if len(accounts) != 1 || accounts[0].KeyFingerprint == minted {
		t.Fatalf("service accounts after the revocation: %+v; want only the successor", accounts)
	}
	successor := accounts[0].KeyFingerprint
	for range 5 {
		r := s.call(t, "eu", token, "POST", "/v1/chat/completions", chatBody("gpt-4o-mini"))
		if r.Status != http.StatusOK || lastFingerprint() != successor {
			t.Fatalf("after the revocation: status %d, key %s, want the successor %s", r.Status, lastFingerprint(), successor)
		}
	}

	// The control plane's reads of the admin key are key-access events.
	var access struct {
		Data []struct {
			ActorKind string `json:"actor_kind"`
			Path      string `json:"path"`
			Reason    string `json:"reason"`
		} `json:"data"`
	}
	s.admin(t, "GET", "/secrets/access?deployment=openai-eu", nil, &access)
	adminReads := 0
	for _, a := range access.Data {
		if a.ActorKind == "controlplane" && a.Reason == "admin_key" && a.Path == adminPath {
			adminReads++
		}
	}
	if adminReads < 3 { // mint on rotate, mint on revoke, delete on revoke
		t.Fatalf("%d admin-key reads recorded, want at least 3: %+v", adminReads, access.Data)
	}
}
