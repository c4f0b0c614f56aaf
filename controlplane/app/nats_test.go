package app

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/portcullis-gw/portcullis/shared/logging"
	"github.com/portcullis-gw/portcullis/shared/natsembed"
)

// A configured CA file must reach the connection: it makes TLS required, which a
// plain server cannot offer.
func TestConnectNATSUsesTheConfiguredCAFile(t *testing.T) {
	s, err := natsembed.Start(natsembed.Options{Listen: "127.0.0.1:0", StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })

	tests := []struct {
		name    string
		caFile  string
		wantErr error
	}{
		{name: "no CA file", caFile: ""},
		{name: "a CA file requires TLS", caFile: writeTestCA(t), wantErr: nats.ErrSecureConnWanted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{NATSURL: s.ClientURL(), NATSCAFile: tt.caFile}
			nc, err := connectNATS(cfg, cfg.NATSURL, logging.New(io.Discard, "info"))
			if err == nil {
				nc.Close()
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("connectNATS error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// writeTestCA writes a self-signed CA certificate made at test time and returns its path.
func writeTestCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "portcullis test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
