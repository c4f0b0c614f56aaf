package upstream

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"

	"github.com/portcullis-gw/portcullis/shared/policy"
)

// tlsConfig builds the client TLS configuration of a deployment: certificate
// verification (on unless the policy says otherwise), a minimum version of TLS 1.2 or
// 1.3, an optional CA bundle and optional SHA-256 pins of the peer's public key.
func tlsConfig(p policy.TLS) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: !p.Verify} //nolint:gosec // verify is the deployment's explicit choice
	switch p.MinVersion {
	case "", "TLS1.2":
	case "TLS1.3":
		cfg.MinVersion = tls.VersionTLS13
	default:
		return nil, fmt.Errorf("tls.min_version %q: must be TLS1.2 or TLS1.3", p.MinVersion)
	}
	if p.CAFile != "" {
		pem, err := os.ReadFile(p.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file %s: no certificates found", p.CAFile)
		}
		cfg.RootCAs = pool
	}
	if len(p.PinSHA256) > 0 {
		pins := make([][]byte, 0, len(p.PinSHA256))
		for _, s := range p.PinSHA256 {
			pin, err := decodePin(s)
			if err != nil {
				return nil, err
			}
			pins = append(pins, pin)
		}
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			for _, cert := range cs.PeerCertificates {
				sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
				for _, pin := range pins {
					if bytes.Equal(sum[:], pin) {
						return nil
					}
				}
			}
			return errPinMismatch
		}
	}
	return cfg, nil
}

// errPinMismatch is the handshake error of a certificate chain that matches none of
// the deployment's pins.
var errPinMismatch = errors.New("upstream certificate matches no pinned public key")

// decodePin accepts a SHA-256 of a SubjectPublicKeyInfo as base64 (as in HPKP) or hex.
func decodePin(s string) ([]byte, error) {
	if b, err := base64.StdEncoding.DecodeString(s); err == nil && len(b) == sha256.Size {
		return b, nil
	}
	if b, err := hex.DecodeString(s); err == nil && len(b) == sha256.Size {
		return b, nil
	}
	return nil, fmt.Errorf("tls.pin_sha256 %q: must be a SHA-256 in base64 or hex", s)
}
