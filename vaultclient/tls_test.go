package vaultclient_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/portcullis-gw/portcullis/shared/testcerts"
	"github.com/portcullis-gw/portcullis/vaultclient"
)

// TestVaultTLSIgnoresTheEnvironment: the VAULT_* variables Vault's own client reads
// (VAULT_SKIP_VERIFY, VAULT_CACERT, VAULT_CAPATH, VAULT_TLS_SERVER_NAME,
// VAULT_CLIENT_CERT/KEY, VAULT_ADDR) change nothing: a Vault whose certificate is
// not trusted by Portcullis's own settings is refused, and one trusted through
// PORTCULLIS_VAULT_CA_FILE is reached, at the configured address, without a client
// certificate.
func TestVaultTLSIgnoresTheEnvironment(t *testing.T) {
	ca := testcerts.NewCA(t)
	caFile := ca.WritePEM(t)
	var requests, clientCerts atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			clientCerts.Add(1)
		}
		if r.URL.Path != "/v1/auth/token/lookup-self" || r.Header.Get("X-Vault-Token") != "test-token" {
			http.Error(w, `{"errors":["permission denied"]}`, http.StatusForbidden)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"data":{"ttl":0,"renewable":false}}`))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.ServerCert(t)}, ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	// Everything Vault's client would take from the environment: skip verification,
	// trust the server's CA, verify another name, present a client certificate, and
	// go to another address.
	clientCert, clientKey := writeKeyPair(t, ca.ServerCert(t))
	decoy := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		t.Error("the client went to VAULT_ADDR")
	}))
	t.Cleanup(decoy.Close)
	t.Setenv("VAULT_SKIP_VERIFY", "true")
	t.Setenv("VAULT_CACERT", caFile)
	t.Setenv("VAULT_CAPATH", filepath.Dir(caFile))
	t.Setenv("VAULT_TLS_SERVER_NAME", "not-this-host.invalid")
	t.Setenv("VAULT_CLIENT_CERT", clientCert)
	t.Setenv("VAULT_CLIENT_KEY", clientKey)
	t.Setenv("VAULT_ADDR", decoy.URL)
	t.Setenv("VAULT_TOKEN", "env-token")

	log := slog.New(slog.DiscardHandler)
	cfg := vaultclient.Config{Addr: srv.URL, Auth: vaultclient.AuthToken, Token: "test-token"}
	if c, err := vaultclient.New(context.Background(), cfg, log); err == nil {
		c.Close()
		t.Fatal("a Vault with an untrusted certificate was accepted (VAULT_SKIP_VERIFY or VAULT_CACERT from the environment)")
	} else if !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("refusal %v: want a certificate error", err)
	}
	if n := requests.Load(); n != 0 {
		t.Fatalf("the untrusted Vault got %d requests", n)
	}

	// Trusted through Portcullis's own setting, it is reached, by its own name,
	// with no client certificate.
	cfg.CAFile = caFile
	c, err := vaultclient.New(context.Background(), cfg, log)
	if err != nil {
		t.Fatalf("with PORTCULLIS_VAULT_CA_FILE: %v", err)
	}
	c.Close()
	if requests.Load() == 0 {
		t.Fatal("the trusted Vault got no request")
	}
	if n := clientCerts.Load(); n != 0 {
		t.Fatalf("%d requests presented VAULT_CLIENT_CERT", n)
	}
}

// writeKeyPair writes cert's certificate and key as PEM files (mode 0600).
func writeKeyPair(t *testing.T, cert tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	der, err := x509.MarshalECPrivateKey(cert.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestSecretFilesOthersCanReadAreRefused: a token file or AppRole secret id file
// that group or others can read is refused before anything is sent to Vault.
func TestSecretFilesOthersCanReadAreRefused(t *testing.T) {
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		requests.Add(1)
		http.Error(w, `{"errors":["permission denied"]}`, http.StatusForbidden)
	}))
	t.Cleanup(srv.Close)
	open := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(open, []byte("s.canary-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		cfg     vaultclient.Config
		setting string
	}{
		{vaultclient.Config{Auth: vaultclient.AuthToken, TokenFile: open}, "PORTCULLIS_VAULT_TOKEN_FILE"},
		{vaultclient.Config{Auth: vaultclient.AuthAppRole, RoleID: "r", SecretIDFile: open}, "PORTCULLIS_VAULT_SECRET_ID_FILE"},
	} {
		tt.cfg.Addr = srv.URL
		c, err := vaultclient.New(context.Background(), tt.cfg, slog.New(slog.DiscardHandler))
		if err == nil {
			c.Close()
			t.Fatalf("%s: a file of mode 0644 was accepted", tt.setting)
		}
		if !strings.Contains(err.Error(), tt.setting) || !strings.Contains(err.Error(), "0644") || strings.Contains(err.Error(), "canary") {
			t.Fatalf("%s: error %v", tt.setting, err)
		}
	}
	if n := requests.Load(); n != 0 {
		t.Fatalf("Vault got %d requests", n)
	}
}
