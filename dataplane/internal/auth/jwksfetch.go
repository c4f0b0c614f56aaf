package auth

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/lestrrat-go/jwx/v2/jwk"
)

// MaxJWKSBytes bounds a JWKS answer: a key set is a few kilobytes, and an issuer
// (or whatever answers in its place) must not make a worker read without end.
const MaxJWKSBytes = 1 << 20

// CheckJWKSURL reports whether raw may be the JWKS URL: https://, or http:// on a
// loopback host only (a local dev issuer), since the key set decides whose tokens
// are valid and must not be open to a network attacker.
func CheckJWKSURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "":
		return errors.New("must be an https:// URL")
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && loopbackHost(u.Hostname()):
		return nil
	case u.Scheme == "http":
		return fmt.Errorf("http:// is allowed on a loopback host only (got host %q): use https://", u.Hostname())
	}
	return fmt.Errorf("scheme %q: must be https://", u.Scheme)
}

// loopbackHost reports whether host is localhost or a loopback address.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// errJWKSRedirect refuses a redirect from the JWKS URL: the configured URL must be
// the key set's own, not a pointer a compromised or misconfigured host can move.
var errJWKSRedirect = errors.New("the JWKS endpoint answered with a redirect; configure the URL it redirects to")

// guardedClient is c made safe for fetching a JWKS: it follows no redirect, and
// the answers it returns are bounded to MaxJWKSBytes (reading more fails). The
// bound wraps what c returns, so that c's own timeout keeps the standard
// transport's handling.
func guardedClient(c *http.Client) jwk.HTTPClient {
	g := *c
	g.CheckRedirect = func(*http.Request, []*http.Request) error { return errJWKSRedirect }
	return boundedClient{client: &g, max: MaxJWKSBytes}
}

// boundedClient refuses an answer that declares more than max bytes, and fails the
// read of one that sends more.
type boundedClient struct {
	client *http.Client
	max    int64
}

// Get fetches url, as jwk.Cache asks.
func (b boundedClient) Get(url string) (*http.Response, error) {
	resp, err := b.client.Get(url)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > b.max {
		resp.Body.Close()
		return nil, fmt.Errorf("JWKS answer of %d bytes: over the %d-byte bound", resp.ContentLength, b.max)
	}
	resp.Body = &boundedBody{ReadCloser: resp.Body, left: b.max}
	return resp, nil
}

// boundedBody reads at most left bytes and fails after that.
type boundedBody struct {
	io.ReadCloser
	left int64
}

func (b *boundedBody) Read(p []byte) (int, error) {
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1] // at most one byte past the bound: enough to tell
	}
	n, err := b.ReadCloser.Read(p)
	if int64(n) > b.left {
		b.left = 0
		b.ReadCloser.Close() // the reader may not close it on an error: free the connection now
		return 0, fmt.Errorf("JWKS answer over the %d-byte bound", MaxJWKSBytes)
	}
	b.left -= int64(n)
	return n, err
}
