// Package admintest gives tests and development tools the admin API tokens of
// service accounts with the roles they need, made through the admin API itself as
// an operator would (never the control plane binary).
package admintest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ErrTokenRefused means the admin API refused the token a service account was to
// be made with (401): it is stale, or was disabled.
var ErrTokenRefused = errors.New("the admin API refused the token")

// ServiceToken makes sure the service account name exists with roles (each "role"
// or "tenant_admin:<tenant>"), through the admin API at adminURL (the server's
// root) with token (the bootstrap, break-glass or an administrator's token), and
// returns a new API token of it, valid for ttl. On a database that already has the
// account (make run's restarts) its roles are set again.
func ServiceToken(ctx context.Context, adminURL, token, name string, roles []string, ttl time.Duration) (string, error) {
	bindings := make([]map[string]string, 0, len(roles))
	for _, r := range roles {
		role, tenant, _ := strings.Cut(r, ":")
		b := map[string]string{"role": role}
		if tenant != "" {
			b["tenant"] = tenant
		}
		bindings = append(bindings, b)
	}
	status, body, err := call(ctx, adminURL, token, http.MethodPost, "/principals",
		map[string]any{"name": name, "kind": "service", "roles": bindings})
	switch {
	case err != nil:
		return "", err
	case status == http.StatusConflict:
		status, body, err = call(ctx, adminURL, token, http.MethodPut, "/principals/"+name+"/roles", map[string]any{"roles": bindings})
		if err != nil {
			return "", err
		}
		if status != http.StatusOK {
			return "", statusError(status, body, "set the roles of "+name)
		}
	case status != http.StatusCreated:
		return "", statusError(status, body, "create principal "+name)
	}
	status, body, err = call(ctx, adminURL, token, http.MethodPost, "/principals/"+name+"/tokens",
		map[string]any{"name": "test", "expires_in_seconds": int64(ttl / time.Second)})
	if err != nil {
		return "", err
	}
	if status != http.StatusCreated {
		return "", statusError(status, body, "create a token of "+name)
	}
	var out struct{ Token string }
	if err := json.Unmarshal(body, &out); err != nil || out.Token == "" {
		return "", fmt.Errorf("create a token of %s: unexpected answer", name)
	}
	return out.Token, nil
}

// Token is ServiceToken for a test, with a token valid for a day.
func Token(t testing.TB, baseURL, token, name string, roles ...string) string {
	t.Helper()
	tok, err := ServiceToken(context.Background(), baseURL, token, name, roles, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
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

func statusError(status int, body []byte, what string) error {
	if status == http.StatusUnauthorized {
		return fmt.Errorf("%s: %w", what, ErrTokenRefused)
	}
	return fmt.Errorf("%s: status %d: %s", what, status, bytes.TrimSpace(body))
}

func call(ctx context.Context, adminURL, token, method, path string, body any) (int, []byte, error) {
	raw, _ := json.Marshal(body) // maps of strings and numbers always marshal
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(adminURL, "/")+"/admin/v1"+path, bytes.NewReader(raw))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, err
}
