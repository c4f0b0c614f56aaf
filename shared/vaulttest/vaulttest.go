// Package vaulttest gives tests a real Vault to talk to over Vault's HTTP API.
//
// Start runs the launcher in tests/vaultdev (Vault's own server core, in memory, on a
// random loopback port; see docs/vault-dev.md) as a subprocess, building it once into
// the user's cache directory. Each Start is a fresh Vault with KV v2 at secret/, the kv
// engine available for version 1 mounts, AppRole available at sys/auth, and the token
// store built in.
//
// When PORTCULLIS_TEST_VAULT_ADDR and PORTCULLIS_TEST_VAULT_TOKEN are both set, Start
// uses that Vault instead and builds nothing. Such a Vault keeps its state between
// tests and runs, so tests name their mounts, roles, policies and secrets with Unique.
//
// BuildLauncher (the cached build) and Launch (a running launcher, and its Stop) take
// no testing.TB: the dev stack (tests/stack, make run) runs its Vault with them too.
//
// This package uses only the standard library: the shared module must not import Vault.
package vaulttest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// requestTimeout bounds one HTTP request to Vault.
const requestTimeout = 30 * time.Second

// Vault is a running Vault that a test may use. Its methods are safe for concurrent
// use.
type Vault struct {
	// Addr is the base address, e.g. "http://127.0.0.1:8200", without a trailing slash.
	Addr string
	// Token is a root token. It is a throwaway dev token for the launcher, or the
	// PORTCULLIS_TEST_VAULT_TOKEN given for an external Vault; never log it.
	Token string
	// External is true when Addr is the Vault named by PORTCULLIS_TEST_VAULT_ADDR,
	// whose state is shared with other tests and runs.
	External bool

	client *http.Client
}

// Start returns a Vault for the test: the external one named by the environment, or a
// fresh launcher process that t.Cleanup stops. It calls t.Fatal when neither can be had.
func Start(t testing.TB) *Vault {
	t.Helper()
	cfg, err := configFromEnv(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	var v *Vault
	if cfg.external {
		v = &Vault{Addr: cfg.addr, Token: cfg.token, External: true}
	} else {
		bin := buildLauncher(t)
		v = startLauncher(t, bin)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	v.client = &http.Client{Transport: transport, Timeout: requestTimeout}
	t.Cleanup(transport.CloseIdleConnections)
	return v
}

// Do sends one request to Vault's HTTP API as root. path is relative to /v1/ and may
// carry a query ("secret/data/app?version=1"); body, when not nil, is sent as JSON.
// It returns the status code and the decoded JSON response (nil for an empty body).
func (v *Vault) Do(t testing.TB, method, path string, body any) (status int, resp map[string]any) {
	t.Helper()
	return v.DoAs(t, v.Token, method, path, body)
}

// DoAs is Do with another token; an empty token sends none (as for a login).
func (v *Vault) DoAs(t testing.TB, token, method, path string, body any) (status int, resp map[string]any) {
	t.Helper()
	var reqBody io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatalf("vault %s %s: encode body: %v", method, path, err)
		}
		reqBody = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, v.Addr+"/v1/"+strings.TrimPrefix(path, "/"), reqBody)
	if err != nil {
		t.Fatalf("vault %s %s: %v", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("X-Vault-Token", token)
	}
	res, err := v.client.Do(req)
	if err != nil {
		t.Fatalf("vault %s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("vault %s %s: read response: %v", method, path, err)
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return res.StatusCode, nil
	}
	if err := json.Unmarshal(raw, &resp); err != nil {
		t.Fatalf("vault %s %s: status %d, response is not a JSON object: %v", method, path, res.StatusCode, err)
	}
	return res.StatusCode, resp
}

// Unique returns name unchanged for a fresh launcher Vault, and name with a random
// suffix for an external one, so that tests sharing an external Vault do not collide
// on mount paths, roles, policies or secret paths.
func (v *Vault) Unique(name string) string {
	if !v.External {
		return name
	}
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error
	return name + "-" + hex.EncodeToString(b[:])
}
