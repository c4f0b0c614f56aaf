package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Egress is a worker's outbound policy: the proxies its upstream calls go
// through, and the hosts it may call at all. The zero value calls every host
// directly. It is immutable once built and safe for concurrent use.
type Egress struct {
	httpProxy, httpsProxy *url.URL
	noProxy               []string // host suffixes (".example.com"), hosts, or "*"
	allow                 []string // host[:port] patterns: "api.openai.com", "*.openai.azure.com", "127.0.0.1:9100"
}

// ErrHostNotAllowed reports a call to a host outside the egress allowlist.
var ErrHostNotAllowed = errors.New("upstream host is not in the egress allowlist")

// NewEgress builds an egress policy. httpProxy and httpsProxy are proxy URLs ("" for
// none); noProxy is a comma-separated list of hosts or domain suffixes reached
// directly ("*" for all); allowHosts is a comma-separated allowlist of host or
// host:port patterns, where "*." matches any subdomain ("" allows every host).
func NewEgress(httpProxy, httpsProxy, noProxy, allowHosts string) (*Egress, error) {
	e := &Egress{noProxy: splitList(noProxy), allow: splitList(allowHosts)}
	var err error
	if e.httpProxy, err = proxyURL("http-proxy", httpProxy); err != nil {
		return nil, err
	}
	if e.httpsProxy, err = proxyURL("https-proxy", httpsProxy); err != nil {
		return nil, err
	}
	for _, p := range e.allow {
		if strings.Contains(strings.TrimPrefix(p, "*."), "*") {
			return nil, fmt.Errorf("egress allowlist entry %q: only a leading \"*.\" may be a wildcard", p)
		}
	}
	return e, nil
}

// WithProxies is e with these proxies in place of its own (the same allowlist), for
// a region whose policy names them. The worker's own allowlist bounds the policy: a
// worker without one takes no proxy from it, and a proxy whose host the allowlist
// does not let through is refused.
func (e *Egress) WithProxies(httpProxy, httpsProxy string, noProxy []string) (*Egress, error) {
	if e == nil || len(e.allow) == 0 {
		return nil, errors.New("this worker has no egress allowlist to bound a proxy the policy names")
	}
	out := &Egress{noProxy: splitList(strings.Join(noProxy, ",")), allow: e.allow}
	var err error
	if out.httpProxy, err = proxyURL("http_proxy", httpProxy); err != nil {
		return nil, err
	}
	if out.httpsProxy, err = proxyURL("https_proxy", httpsProxy); err != nil {
		return nil, err
	}
	for _, u := range []*url.URL{out.httpProxy, out.httpsProxy} {
		if u != nil && !out.Allowed(hostPort(u)) {
			return nil, fmt.Errorf("proxy %s: %w", u.Host, ErrHostNotAllowed)
		}
	}
	return out, nil
}

// hostPort is u's host:port, with the scheme's default port.
func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	port := "80"
	if u.Scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(u.Hostname(), port)
}

func proxyURL(name, raw string) (*url.URL, error) {
	if raw == "" {
		return nil, nil
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("%s %q: must be an http(s) URL", name, raw)
	}
	return u, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.ToLower(strings.TrimSpace(p)); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Allowed reports whether the allowlist lets the worker call hostport (host:port).
func (e *Egress) Allowed(hostport string) bool {
	if e == nil || len(e.allow) == 0 {
		return true
	}
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	host, hostport = strings.ToLower(host), strings.ToLower(hostport)
	for _, p := range e.allow {
		switch {
		case p == host || p == hostport:
			return true
		case strings.HasPrefix(p, "*.") && strings.HasSuffix(host, p[1:]):
			return true
		}
	}
	return false
}

// proxy picks the proxy of a request. With no proxy configured it is the
// environment's (HTTP_PROXY, HTTPS_PROXY, NO_PROXY). Otherwise: none for a host on
// the no-proxy list, else the proxy of its scheme; unlike the environment's rules,
// loopback hosts are proxied too, as the configuration says.
func (e *Egress) proxy(r *http.Request) (*url.URL, error) {
	if e == nil || (e.httpProxy == nil && e.httpsProxy == nil) {
		return http.ProxyFromEnvironment(r)
	}
	host := strings.ToLower(r.URL.Hostname())
	for _, n := range e.noProxy {
		n = strings.TrimPrefix(n, "*") // "*.internal" is ".internal", as Go's own NO_PROXY reads it
		if n == "" || n == host || (strings.HasPrefix(n, ".") && strings.HasSuffix(host, n)) || strings.HasSuffix(host, "."+n) {
			return nil, nil
		}
	}
	if r.URL.Scheme == "https" {
		return e.httpsProxy, nil
	}
	return e.httpProxy, nil
}

// dialContext dials like dialer, but only hosts the allowlist lets through. With a
// proxy, the proxy is dialed: the allowlist is then checked on each request's URL
// (see checkRequest).
func (e *Egress) dialContext(dialer *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if e != nil && e.httpProxy == nil && e.httpsProxy == nil && !e.Allowed(addr) {
			return nil, fmt.Errorf("dial %s: %w", addr, ErrHostNotAllowed)
		}
		return dialer.DialContext(ctx, network, addr)
	}
}

// checkRequest refuses a request to a host outside the allowlist, whether or not
// it goes through a proxy.
func (e *Egress) checkRequest(u *url.URL) error {
	if !e.Allowed(hostPort(u)) {
		return fmt.Errorf("%s: %w", u.Host, ErrHostNotAllowed)
	}
	return nil
}
