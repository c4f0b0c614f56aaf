package rotator

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
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
	tlsCfg, err := d.TLS.ClientConfig() // as the data plane calls its upstream
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

// errPinMismatch is the handshake error of a certificate chain that matches none of
// the deployment's pins.
var errPinMismatch = policy.ErrPinMismatch
