// Package adminauthtest gives tests the admin API tokens of service accounts with
// the roles they need, made through the admin API itself as an operator would.
package adminauthtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Token creates the service account name holding roles (each "role" or
// "tenant_admin:<tenant>"), through the admin API at baseURL (the server's root)
// with token (the bootstrap token, or any token that may manage principals), and
// returns a new API token of it, valid for a day.
func Token(t testing.TB, baseURL, token, name string, roles ...string) string {
	t.Helper()
	bindings := make([]map[string]string, 0, len(roles))
	for _, r := range roles {
		role, tenant, _ := strings.Cut(r, ":")
		b := map[string]string{"role": role}
		if tenant != "" {
			b["tenant"] = tenant
		}
		bindings = append(bindings, b)
	}
	call(t, baseURL, token, "/admin/v1/principals", map[string]any{"name": name, "kind": "service", "roles": bindings}, nil)
	var out struct {
		Token string `json:"token"`
	}
	call(t, baseURL, token, "/admin/v1/principals/"+name+"/tokens",
		map[string]any{"name": "test", "expires_in_seconds": 86400}, &out)
	if out.Token == "" {
		t.Fatalf("creating a token of %s answered no token", name)
	}
	return out.Token
}

// Admin returns the API token of a new service account with the admin role, made
// with the bootstrap token in dataDir's admin-token file.
func Admin(t testing.TB, baseURL, dataDir string) string {
	t.Helper()
	return Token(t, baseURL, BootstrapToken(t, dataDir), "test-admin", "admin")
}

// BootstrapToken reads the bootstrap (or break-glass) token from dataDir.
func BootstrapToken(t testing.TB, dataDir string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dataDir, "admin-token"))
	if err != nil {
		t.Fatalf("read the bootstrap admin token: %v", err)
	}
	return strings.TrimSpace(string(raw))
}

func call(t testing.TB, baseURL, token, path string, body any, out any) {
	t.Helper()
	b, _ := json.Marshal(body) // maps of strings always marshal
	req, err := http.NewRequest(http.MethodPost, strings.TrimRight(baseURL, "/")+path, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST %s: status %d: %s", path, resp.StatusCode, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatal(fmt.Errorf("POST %s: %w", path, err))
		}
	}
}
