package rotator_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/controlplane/internal/rotator"
	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// recorder is an HTTP listener that records every request it gets, whole.
type recorder struct {
	mu   sync.Mutex
	reqs []string // method, URL, headers and body of each request
}

func (r *recorder) record(req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s\n", req.Method, req.URL)
	for k, vs := range req.Header {
		fmt.Fprintf(&b, "%s: %s\n", k, strings.Join(vs, ","))
	}
	b.Write(body)
	r.mu.Lock()
	r.reqs = append(r.reqs, b.String())
	r.mu.Unlock()
}

func (r *recorder) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.reqs...)
}

// carrying returns the recorded requests that hold s anywhere.
func (r *recorder) carrying(s string) []string {
	var out []string
	for _, req := range r.requests() {
		if strings.Contains(req, s) {
			out = append(out, req)
		}
	}
	return out
}

// listen starts a recorder on loopback answering with h (200 {} when nil).
func listen(t *testing.T, tlsServer bool, h http.HandlerFunc) (*recorder, *httptest.Server) {
	t.Helper()
	rec := &recorder{}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.record(r)
		if h != nil {
			h(w, r)
			return
		}
		_, _ = io.WriteString(w, "{}")
	})
	srv := httptest.NewUnstartedServer(handler)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are the point
	if tlsServer {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return rec, srv
}

// fakeAdminAPI answers the openai_admin minter's calls when they carry *adminKey
// (read at each call): a new service account with a fresh key, or a deletion.
func fakeAdminAPI(adminKey *string) http.HandlerFunc {
	var mu sync.Mutex
	n := 0
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+*adminKey {
			http.Error(w, `{"error":{"message":"bad admin key"}}`, http.StatusUnauthorized)
			return
		}
		switch {
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/service_accounts"):
			mu.Lock()
			n++
			id := n
			mu.Unlock()
			_ = json.NewEncoder(w).Encode(map[string]any{"id": fmt.Sprintf("svc_%d", id),
				"api_key": map[string]any{"id": fmt.Sprintf("key_%d", id), "value": fmt.Sprintf("canary-minted-%d", id)}})
		case r.Method == http.MethodDelete:
			_, _ = io.WriteString(w, `{"deleted":true}`)
		default:
			http.NotFound(w, r)
		}
	}
}

// adminEnv is an env whose rotator's OpenAI admin URL is adminURL, with an
// openai_admin deployment openai-eu whose base_url is baseURL, an admin key in Vault
// and a first key, baselined.
func adminEnv(t *testing.T, adminURL, baseURL string) (e *env, adminKey, keyPath string) {
	t.Helper()
	e = newEnv(t, func(o *rotator.Options) { o.OpenAIAdminURL = adminURL })
	ctx := context.Background()
	adminKey = fmt.Sprintf("canary-admin-%d", time.Now().UnixNano())
	adminPath, keyPath := "secret/"+e.v.Unique("portcullis-admin/openai"), "secret/"+e.v.Unique("portcullis/openai-eu")
	if _, err := e.vc.WriteKV(ctx, adminPath, adminKey, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.vc.WriteKV(ctx, keyPath, "canary-first", 0); err != nil {
		t.Fatal(err)
	}
	e.deployment(t, policy.Deployment{Name: "openai-eu", Provider: "openai", BaseURL: baseURL, KeySource: policy.KeySourceVault,
		KeyPath: keyPath, Minter: policy.MinterOpenAIAdmin, AdminKeyPath: adminPath, AdminProjectID: "proj_test", RotationOverlapHours: 1})
	e.r.Check(ctx) // the baseline
	return e, adminKey, keyPath
}

// TestOpenAIAdminKeyGoesOnlyToTheAdminURL: with an openai_admin deployment's
// base_url pointed at a listener of its own (as anyone allowed to change base_url
// could), rotating and revoking send that listener nothing, let alone the admin key;
// the configured admin API gets every call, with the key.
func TestOpenAIAdminKeyGoesOnlyToTheAdminURL(t *testing.T) {
	ctx := context.Background()
	var adminKey string
	admin, adminSrv := listen(t, false, fakeAdminAPI(&adminKey))
	attacker, attackerSrv := listen(t, false, nil)
	e, key, keyPath := adminEnv(t, adminSrv.URL, attackerSrv.URL+"/v1")
	adminKey = key

	rots, err := e.r.Rotate(ctx, rotator.Request{Provider: "openai", Deployment: "openai-eu", Actor: "admin"})
	if err != nil || len(rots) != 1 || rots[0].ProviderKeyID != "svc_1" || *rots[0].NewVersion != 2 {
		t.Fatalf("rotate: %+v, %v", rots, err)
	}
	if got, _ := e.vc.ReadKV(ctx, keyPath, 0); got.Key != "canary-minted-1" {
		t.Fatalf("the minted key is not in Vault: version %d", got.Version)
	}
	if _, err := e.r.Revoke(ctx, rotator.Request{Provider: "openai", Actor: "admin", Reason: "drill"}); err != nil {
		t.Fatalf("revoke: %v", err)
	}

	if reqs := attacker.carrying(adminKey); len(reqs) > 0 {
		t.Fatalf("the base_url listener received the admin key:\n%s", strings.Join(reqs, "\n---\n"))
	}
	if reqs := attacker.requests(); len(reqs) > 0 {
		t.Fatalf("the rotator called base_url %d times, want never:\n%s", len(reqs), strings.Join(reqs, "\n---\n"))
	}
	withKey := admin.carrying("Bearer " + adminKey)
	if len(withKey) < 3 || len(withKey) != len(admin.requests()) { // mint on rotate, mint and delete on revoke
		t.Fatalf("the admin API got %d calls with the admin key of %d, want at least 3, all with it:\n%s\nlogs: %s", len(withKey), len(admin.requests()), strings.Join(admin.requests(), "\n---\n"), e.logs)
	}
	if !strings.Contains(withKey[0], "POST /v1/organization/projects/proj_test/service_accounts") {
		t.Fatalf("first admin call:\n%s", withKey[0])
	}
}

// TestOpenAIAdminAnswersThatAreRefused: a redirect is never followed (the key never
// reaches its target) and an oversized answer is refused; either way no key is
// written.
func TestOpenAIAdminAnswersThatAreRefused(t *testing.T) {
	target, targetSrv := listen(t, false, nil)
	for _, c := range []struct {
		name   string
		answer http.HandlerFunc
		want   string
	}{
		{"307", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, targetSrv.URL+r.URL.Path, http.StatusTemporaryRedirect)
		}, "redirect"},
		{"308", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, targetSrv.URL+r.URL.Path, http.StatusPermanentRedirect)
		}, "redirect"},
		{"oversized", func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, `{"id":"svc_1","api_key":{"value":"`+strings.Repeat("x", 2<<20)+`"}}`)
		}, "larger than"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			admin, adminSrv := listen(t, false, c.answer)
			e, adminKey, keyPath := adminEnv(t, adminSrv.URL, "https://api.openai.example")
			_, err := e.r.Rotate(ctx, rotator.Request{Provider: "openai", Deployment: "openai-eu", Actor: "admin"})
			if ae := apierr.From(err); ae.Code != apierr.ProviderAdminError || !strings.Contains(ae.Message, c.want) {
				t.Fatalf("rotate: %v; want %s naming %q", err, apierr.ProviderAdminError, c.want)
			}
			if n := len(admin.requests()); n != 1 {
				t.Fatalf("the admin API got %d calls, want 1", n)
			}
			if reqs := target.carrying(adminKey); len(reqs) > 0 || len(target.requests()) > 0 {
				t.Fatalf("the redirect was followed: its target got %d requests, %d with the admin key", len(target.requests()), len(reqs))
			}
			if meta, _ := e.vc.ReadKVMeta(ctx, keyPath); meta.Current != 1 {
				t.Fatalf("a key was written: version %d", meta.Current)
			}
		})
	}
}

// TestOpenAIAdminTLSPolicy: the admin API call follows the deployment's TLS policy:
// its CA bundle and pins; tls.verify false is refused outright, before any
// connection.
func TestOpenAIAdminTLSPolicy(t *testing.T) {
	ctx := context.Background()
	var adminKey string
	admin, adminSrv := listen(t, true, fakeAdminAPI(&adminKey))
	e, key, _ := adminEnv(t, adminSrv.URL, "https://api.openai.example")
	adminKey = key
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	cert := adminSrv.Certificate()
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	goodPin := base64.StdEncoding.EncodeToString(sum[:])
	otherPin := base64.StdEncoding.EncodeToString(make([]byte, sha256.Size))

	for _, c := range []struct {
		name string
		tls  policy.TLS
		want string // "" for success, else in the error message
	}{
		{"system roots", policy.TLS{Verify: true}, "not trusted"},
		{"verify off", policy.TLS{Verify: false, CAFile: caFile}, "tls.verify is false"},
		{"wrong pin", policy.TLS{Verify: true, CAFile: caFile, PinSHA256: []string{otherPin}}, "no pinned public key"},
		{"CA and pin", policy.TLS{Verify: true, CAFile: caFile, PinSHA256: []string{goodPin}, MinVersion: "TLS1.2"}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec, err := e.st.Deployments().Get(ctx, "openai-eu")
			if err != nil {
				t.Fatal(err)
			}
			rec.Entity.TLS = c.tls
			if _, err := e.st.Deployments().Update(ctx, "openai-eu", rec.Revision, rec.Entity); err != nil {
				t.Fatal(err)
			}
			before := len(admin.requests())
			_, err = e.r.Rotate(ctx, rotator.Request{Provider: "openai", Deployment: "openai-eu", Actor: "admin"})
			if c.want == "" {
				if err != nil || len(admin.carrying("Bearer "+adminKey)) == 0 {
					t.Fatalf("rotate: %v", err)
				}
				return
			}
			if ae := apierr.From(err); ae.Code != apierr.ProviderAdminError || !strings.Contains(ae.Message, c.want) {
				t.Fatalf("rotate: %v; want %s naming %q", err, apierr.ProviderAdminError, c.want)
			}
			if n := len(admin.requests()) - before; n != 0 {
				t.Fatalf("the admin API got %d requests, want none", n)
			}
		})
	}
}
