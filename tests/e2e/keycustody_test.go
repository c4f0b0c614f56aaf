package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/shared/vaulttest"
	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

// requestLog is an HTTP listener that records every request it gets, whole: method,
// URL, headers and body.
type requestLog struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []loggedRequest
}

type loggedRequest struct {
	dump   string // all of it, as text
	target string // method and URL
	header http.Header
	body   []byte
}

func newRequestLog(t *testing.T, answer http.HandlerFunc) *requestLog {
	t.Helper()
	l := &requestLog{}
	l.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s\n", r.Method, r.URL)
		for k, vs := range r.Header {
			fmt.Fprintf(&b, "%s: %s\n", k, strings.Join(vs, ","))
		}
		b.Write(body)
		l.mu.Lock()
		l.reqs = append(l.reqs, loggedRequest{dump: b.String(), target: r.Method + " " + r.URL.String(), header: r.Header.Clone(), body: body})
		l.mu.Unlock()
		if answer != nil {
			answer(w, r)
		}
	}))
	t.Cleanup(l.srv.Close)
	return l
}

// all returns every request as text.
func (l *requestLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.reqs))
	for _, r := range l.reqs {
		out = append(out, r.dump)
	}
	return out
}

// find returns the last request whose body holds s.
func (l *requestLog) find(s string) (loggedRequest, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.reqs) - 1; i >= 0; i-- {
		if strings.Contains(string(l.reqs[i].body), s) {
			return l.reqs[i], true
		}
	}
	return loggedRequest{}, false
}

// TestOpenAIAdminKeyNeverGoesToBaseURL: an admin who points an openai_admin
// deployment's base_url at a listener of their own and rotates (or revokes) does not
// receive the organization admin key there: the rotator calls only the control
// plane's OpenAI admin URL (the mock), which mints the keys.
func TestOpenAIAdminKeyNeverGoesToBaseURL(t *testing.T) {
	t.Parallel()
	v := vaulttest.Start(t)
	s := startStack(t, withVault(v), withWorkers(worker{name: "eu", region: "eu"}))
	stamp := fmt.Sprint(time.Now().UnixNano())
	adminKey := "canary-admin-" + stamp
	adminPath := "secret/" + v.Unique("portcullis-admin/openai")
	writeKey(t, v, adminPath, adminKey, 0)
	writeKey(t, v, s.keyPaths["eu"], "canary-first-"+stamp, 0)
	writeKey(t, v, s.keyPaths["us"], "canary-us-"+stamp, 0)
	up := s.upstream["eu"]
	up.SetAdminKey(adminKey)
	s.seed(t)
	thief := newRequestLog(t, nil)
	s.patch(t, "/deployments/openai-eu", map[string]any{"minter": "openai_admin", "admin_key_path": adminPath,
		"admin_project_id": "proj_test", "rotation_overlap_hours": 1, "base_url": thief.srv.URL})

	var rotated struct {
		Data []struct {
			ProviderKeyID string `json:"provider_key_id"`
			NewVersion    int    `json:"new_version"`
		} `json:"data"`
	}
	if status, _ := s.admin(t, "POST", "/secrets/rotate", map[string]any{"provider": "openai", "deployment": "openai-eu"}, &rotated); status != http.StatusOK || len(rotated.Data) != 1 || rotated.Data[0].NewVersion != 2 {
		t.Fatalf("rotate: %d %+v", status, rotated)
	}
	s.mustAdmin(t, http.StatusOK, "POST", "/secrets/revoke", map[string]any{"provider": "openai", "reason": "drill"})

	var leaked []string
	for _, r := range thief.all() {
		if strings.Contains(r, adminKey) {
			leaked = append(leaked, r)
		}
	}
	if len(leaked) > 0 {
		t.Fatalf("the base_url listener received the admin key in %d requests:\n%s", len(leaked), strings.Join(leaked, "\n---\n"))
	}
	if n := len(thief.all()); n > 0 {
		t.Fatalf("the base_url listener got %d requests from a rotation and a revocation, want none:\n%s", n, strings.Join(thief.all(), "\n---\n"))
	}
	// The admin API (the mock, at the control plane's admin URL) minted both keys, and
	// deleted the revoked one's account.
	accounts := up.ServiceAccounts()
	if len(accounts) != 1 || accounts[0].Project != "proj_test" || accounts[0].ID == rotated.Data[0].ProviderKeyID {
		t.Fatalf("service accounts at the admin API: %+v; want only the revocation's successor", accounts)
	}
	if !strings.HasPrefix(s.openAIAdminURL, "http://127.0.0.1:") || strings.HasPrefix(s.upURL["eu"], s.openAIAdminURL) {
		t.Fatalf("the admin URL %s is not a listener of its own", s.openAIAdminURL)
	}
}

// TestKeyRevokedAlert: a revocation raises a key_revoked alert that the alerts API
// lists and the alert webhook receives, signed, like an anomaly alert.
func TestKeyRevokedAlert(t *testing.T) {
	t.Parallel()
	secret := []byte("e2e-key-alert-secret-0123456789")
	secretFile := filepath.Join(t.TempDir(), "webhook.key")
	if err := os.WriteFile(secretFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	hook := newRequestLog(t, nil)
	v := vaulttest.Start(t)
	s := startStack(t, withVault(v), withAnomaly(hook.srv.URL+"/portcullis", secretFile), withWorkers(worker{name: "eu", region: "eu"}))
	stamp := fmt.Sprint(time.Now().UnixNano())
	writeKey(t, v, s.keyPaths["eu"], "canary-eu-"+stamp, 0)
	writeKey(t, v, s.keyPaths["us"], "canary-us-"+stamp, 0)
	s.seed(t)
	reason := "suspected leak " + stamp
	s.mustAdmin(t, http.StatusOK, "POST", "/secrets/revoke", map[string]any{"provider": "openai", "reason": reason})

	type alertRow struct {
		ID       int64  `json:"id"`
		Kind     string `json:"kind"`
		Severity string `json:"severity"`
		Message  string `json:"message"`
		Details  struct {
			Provider    string   `json:"provider"`
			Deployments []string `json:"deployments"`
			Reason      string   `json:"reason"`
		} `json:"details"`
	}
	var found alertRow
	waitfor.Within(t, 5*time.Second, "the key_revoked alert in GET /alerts", func() bool {
		var list struct {
			Data []alertRow `json:"data"`
		}
		s.admin(t, "GET", "/alerts", nil, &list)
		for _, a := range list.Data {
			if a.Kind == "key_revoked" {
				found = a
				return true
			}
		}
		return false
	})
	if found.Severity != "critical" || found.Details.Provider != "openai" || found.Details.Reason != reason ||
		strings.Join(found.Details.Deployments, ",") != "openai-eu,openai-us" || !strings.Contains(found.Message, reason) {
		t.Fatalf("key_revoked alert %+v", found)
	}

	var req loggedRequest
	waitfor.Within(t, 10*time.Second, "the key_revoked webhook", func() bool {
		var ok bool
		req, ok = hook.find(`"kind":"key_revoked"`)
		return ok
	})
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("v2:" + req.header.Get("X-Portcullis-Timestamp") + ":" + hook.srv.URL + "/portcullis:" + string(req.body)))
	if want := "v2=" + hex.EncodeToString(m.Sum(nil)); req.header.Get("X-Portcullis-Signature") != want {
		t.Fatalf("webhook signature %q, want %q over its URL; request:\n%s", req.header.Get("X-Portcullis-Signature"), want, req.dump)
	}
	if id := req.header.Get("X-Portcullis-Alert-Id"); id != fmt.Sprintf("key-%d", found.ID) || req.target != "POST /portcullis" ||
		!strings.Contains(string(req.body), reason) {
		t.Fatalf("webhook request %s, want the alert key-%d", req.dump, found.ID)
	}
}
