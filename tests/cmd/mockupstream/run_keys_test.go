package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestRunWithKeyFilesAndAdminAPI runs the command with an accept-keys file and an
// admin key, and walks a rotation: the file changes, the admin API mints a key, the
// control API revokes it, and no log line ever holds a key.
func TestRunWithKeyFilesAndAdminAPI(t *testing.T) {
	const (
		key1  = "sk-run-one-0123456789"
		key2  = "sk-run-two-0123456789"
		admin = "sk-admin-run-0123456789"
	)
	dir := t.TempDir()
	keysFile, adminFile := filepath.Join(dir, "keys"), filepath.Join(dir, "admin")
	writeKeys(t, keysFile, key1+"\n")
	if err := os.WriteFile(adminFile, []byte(admin+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logR, logW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--listen", "127.0.0.1:0", "--control-listen", "127.0.0.1:0",
			"--accept-keys-file", keysFile, "--admin-key-file", adminFile}, lookupIn(nil), logW, io.Discard)
		logW.Close()
	}()
	var mu sync.Mutex
	var logs strings.Builder
	lines := bufio.NewScanner(logR)
	var addrs struct {
		Msg         string `json:"msg"`
		Addr        string `json:"addr"`
		ControlAddr string `json:"control_addr"`
		Accepted    int    `json:"accepted_keys"`
		AdminAPI    bool   `json:"admin_api"`
	}
	for addrs.Addr == "" {
		if !lines.Scan() {
			t.Fatalf("no listening log line: %v", <-done)
		}
		logs.WriteString(lines.Text() + "\n")
		_ = json.Unmarshal(lines.Bytes(), &addrs)
	}
	if addrs.ControlAddr == "" || addrs.Accepted != 1 || !addrs.AdminAPI {
		t.Fatalf("listening line %+v", addrs)
	}
	drained := make(chan struct{})
	go func() { // keep draining the log so run never blocks writing it
		defer close(drained)
		for lines.Scan() {
			mu.Lock()
			logs.WriteString(lines.Text() + "\n")
			mu.Unlock()
		}
	}()
	base := "http://" + addrs.Addr + "/d/openai-eu"

	send := func(method, url, auth, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	models := func(key string) int {
		t.Helper()
		status, _ := send(http.MethodGet, base+"/v1/models", key, "")
		return status
	}

	if models(key1) != 200 || models(key2) != 401 {
		t.Fatalf("with the first file: key1 %d, key2 %d; want 200, 401", models(key1), models(key2))
	}
	writeKeys(t, keysFile, key2+"\n")
	if models(key1) != 401 || models(key2) != 200 {
		t.Fatalf("after the file changed: key1 %d, key2 %d; want 401, 200", models(key1), models(key2))
	}

	status, body := send(http.MethodPost, base+"/v1/organization/projects/proj_dev/service_accounts", admin, `{"name":"rotation"}`)
	var created struct {
		ID     string `json:"id"`
		APIKey struct {
			Value string `json:"value"`
		} `json:"api_key"`
	}
	if err := json.Unmarshal([]byte(body), &created); status != 200 || err != nil || created.APIKey.Value == "" {
		t.Fatalf("create: status %d (%v)", status, err)
	}
	minted := created.APIKey.Value
	if models(minted) != 200 {
		t.Fatalf("the minted key: status %d", models(minted))
	}
	control := "http://" + addrs.ControlAddr + keysPath
	if status, body := send(http.MethodGet, control, "", ""); status != 200 || strings.TrimSpace(body) != `{"accepted":2}` {
		t.Fatalf("GET /mock/keys: status %d: %s", status, body)
	}
	if status, body := send(http.MethodPost, control, "", `{"revoke":"`+minted+`"}`); status != 200 || strings.Contains(body, minted) {
		t.Fatalf("POST /mock/keys revoke: status %d", status)
	}
	if models(minted) != 401 || models(key2) != 200 {
		t.Fatalf("after the revoke: minted %d, key2 %d; want 401, 200", models(minted), models(key2))
	}
	if status, _ := send(http.MethodDelete, base+"/v1/organization/projects/proj_dev/service_accounts/"+created.ID, admin, ""); status != 200 {
		t.Fatalf("delete: status %d", status)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	<-drained
	for _, k := range []string{key1, key2, admin, minted} {
		if strings.Contains(logs.String(), k) {
			t.Fatalf("the log holds a key:\n%s", logs.String())
		}
	}
	if !strings.Contains(logs.String(), `"path":"/d/openai-eu/v1/organization/projects/proj_dev/service_accounts"`) {
		t.Errorf("no access log line for the admin call:\n%s", logs.String())
	}
}

func TestRunRefusesBadKeyFiles(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "empty admin key file", args: []string{"--admin-key-file", empty}, wantErr: "admin-key-file"},
		{name: "missing admin key file", args: []string{"--admin-key-file", missing}, wantErr: "admin-key-file"},
		{name: "empty accept-keys file", args: []string{"--accept-keys-file", empty}, wantErr: "no key"},
		{name: "missing accept-keys file", args: []string{"--accept-keys-file", missing}, wantErr: "accept-keys-file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--listen", "127.0.0.1:0"}, tc.args...)
			err := run(context.Background(), args, lookupIn(map[string]string{envControlListen: ""}), io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("run: %v, want an error mentioning %q", err, tc.wantErr)
			}
		})
	}
}
