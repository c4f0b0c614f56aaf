package vaultclient_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/portcullis-gw/portcullis/vaultclient"
)

// TestKubernetesLoginRequest checks the login request Kubernetes auth builds: the
// role and the pod's service-account token, to auth/<mount>/login. Without a
// Kubernetes cluster this is as far as Kubernetes auth is tested (docs/keys.md): the
// server here only answers that one request the way Vault does.
func TestKubernetesLoginRequest(t *testing.T) {
	jwtFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(jwtFile, []byte("service-account-jwt\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ mount, path string }{{"", "/v1/auth/kubernetes/login"}, {"k8s-eu", "/v1/auth/k8s-eu/login"}} {
		var mu sync.Mutex
		var got struct {
			path string
			body map[string]any
		}
		vault := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			raw, _ := io.ReadAll(r.Body)
			mu.Lock()
			got.path = r.URL.Path
			_ = json.Unmarshal(raw, &got.body)
			mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"auth":{"client_token":"s.issued","policies":["portcullis-dataplane"],"lease_duration":0,"renewable":false}}`)
		}))
		c, err := vaultclient.New(context.Background(), vaultclient.Config{Addr: vault.URL, Auth: vaultclient.AuthKubernetes,
			K8sRole: "portcullis-dataplane", K8sJWTFile: jwtFile, Mount: tc.mount}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("mount %q: login: %v", tc.mount, err)
		}
		if c.API().Token() != "s.issued" {
			t.Fatalf("mount %q: the issued token is not in use", tc.mount)
		}
		c.Close()
		vault.Close()
		mu.Lock()
		if got.path != tc.path || got.body["role"] != "portcullis-dataplane" || got.body["jwt"] != "service-account-jwt" {
			t.Fatalf("mount %q: login request %s %v", tc.mount, got.path, got.body)
		}
		mu.Unlock()
	}

	// A missing token file is a clear error at start.
	_, err := vaultclient.New(context.Background(), vaultclient.Config{Addr: "http://127.0.0.1:1", Auth: vaultclient.AuthKubernetes,
		K8sRole: "r", K8sJWTFile: filepath.Join(t.TempDir(), "missing")}, slog.New(slog.DiscardHandler))
	if err == nil {
		t.Fatal("a missing service-account token file was accepted")
	}
}
