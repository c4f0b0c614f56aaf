package policy

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
)

// ErrPinMismatch is the handshake error of a certificate chain that matches none of
// a deployment's pins (TLS.PinSHA256).
var ErrPinMismatch = errors.New("the peer's certificate matches no pinned public key (tls.pin_sha256)")

// ClientConfig is the client TLS configuration of t, for the data plane's upstream
// calls and the control plane's provider admin calls alike: certificate verification
// on (a caller that honours Verify false turns it off itself), a minimum version of
// TLS 1.2 or 1.3, an optional CA bundle (instead of the system's) and optional
// SHA-256 pins of a public key in the peer's chain (ErrPinMismatch otherwise).
func (t TLS) ClientConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	switch t.MinVersion {
	case "", "TLS1.2":
	case "TLS1.3":
		cfg.MinVersion = tls.VersionTLS13
	default:
		return nil, fmt.Errorf("tls.min_version %q: must be TLS1.2 or TLS1.3", t.MinVersion)
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file %s: no certificates found", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if len(t.PinSHA256) > 0 {
		pins := make([][]byte, 0, len(t.PinSHA256))
		for _, s := range t.PinSHA256 {
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
			return ErrPinMismatch
		}
	}
	return cfg, nil
}

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
