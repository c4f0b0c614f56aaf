package rotator

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/portcullis-gw/portcullis/shared/policy"
)

// Bounds of a call to a provider's admin API.
const (
	adminCallTimeout     = 30 * time.Second // the whole call, answer included
	adminConnectTimeout  = 10 * time.Second // TCP connect and TLS handshake, unless the deployment says less
	adminMaxAnswerHeader = 64 << 10
	maxAdminAnswer       = 1 << 20
)

// parseAdminURL parses an admin API base URL: https, or http to a loopback host (a
// local mock), with a host, and no user info, query or fragment.
func parseAdminURL(s string) (*url.URL, error) {
	if reason := CheckAdminURL(s); reason != "" {
		return nil, fmt.Errorf("%q: %s", s, reason)
	}
	return url.Parse(s)
}

// CheckAdminURL checks an admin API base URL: "" when it is an https URL (or an
// http one whose host is loopback: localhost, 127.0.0.0/8 or ::1) with a host and
// no user info, query or fragment; else the reason it is not.
func CheckAdminURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || !u.IsAbs() {
		return "must be an absolute https URL such as " + DefaultOpenAIAdminURL
	}
	if u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "must not carry user info, a query or a fragment"
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !loopbackHost(u.Hostname()) {
			return "must be https; http is allowed only to a loopback host (localhost, 127.0.0.1, ::1), for a local mock"
		}
	default:
		return "must be an https URL"
	}
	return ""
}

func loopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.Unmap().IsLoopback()
}

// sameOrigin refuses a request whose scheme or host is not the admin URL's.
func sameOrigin(u, admin *url.URL) error {
	if !strings.EqualFold(u.Scheme, admin.Scheme) || !strings.EqualFold(u.Host, admin.Host) {
		return fmt.Errorf("refusing to send the admin key to %s://%s: only %s://%s is the admin API", u.Scheme, u.Host, admin.Scheme, admin.Host)
	}
	return nil
}

// adminClient is the HTTP client of one admin API call for deployment d: d's TLS
// policy, no redirects, bounded connect, handshake and answer-header times, no
// connection reuse. With an https admin URL, d's tls.verify false is refused: the
// admin key never goes to an unverified peer.
func adminClient(d policy.Deployment, admin *url.URL) (*http.Client, error) {
	tlsCfg, err := adminTLSConfig(d.TLS)
	if err != nil {
		return nil, err
	}
	if admin.Scheme == "https" && !d.TLS.Verify {
		return nil, errors.New("tls.verify is false: the admin key is never sent without certificate verification")
	}
	connect := adminConnectTimeout
	if c := time.Duration(d.ConnectTimeoutSeconds) * time.Second; c > 0 && c < connect {
		connect = c
	}
	tr := &http.Transport{
		Proxy:                  http.ProxyFromEnvironment, // a CONNECT tunnel: TLS, and the pins, end at the admin host
		DialContext:            (&net.Dialer{Timeout: connect}).DialContext,
		TLSClientConfig:        tlsCfg,
		TLSHandshakeTimeout:    connect,
		ResponseHeaderTimeout:  adminCallTimeout,
		MaxResponseHeaderBytes: adminMaxAnswerHeader,
		DisableKeepAlives:      true,
		ForceAttemptHTTP2:      true,
	}
	return &http.Client{
		Timeout:   adminCallTimeout,
		Transport: tr,
		// Stop at a redirect: adminCall turns the 3xx into an error, and the key never
		// follows a Location anywhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

// adminTLSConfig builds the client TLS configuration of a deployment's TLS policy, as
// the data plane does for its upstream calls: verification, a minimum version of TLS
// 1.2 or 1.3, an optional CA bundle (instead of the system's) and optional SHA-256
// pins of a public key in the peer's chain.
func adminTLSConfig(p policy.TLS) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
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
var errPinMismatch = errors.New("the admin API's certificate matches no pinned public key (tls.pin_sha256)")

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
