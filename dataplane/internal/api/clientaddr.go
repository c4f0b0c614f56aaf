package api

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/pires/go-proxyproto"
)

// TrustedProxies are the networks of the load balancers and proxies in front of the
// workers (PORTCULLIS_TRUSTED_PROXIES). Only a peer in them may say where a request
// came from, with X-Forwarded-For or the PROXY protocol; anyone else's forwarding
// headers are ignored, so a client cannot pick the source_net its requests are
// audited and checked (new_source_ip) under.
type TrustedProxies []netip.Prefix

// ParseTrustedProxies parses a comma-separated list of CIDRs or addresses (an
// address is its own /32 or /128); "" is none.
func ParseTrustedProxies(s string) (TrustedProxies, error) {
	var out TrustedProxies
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("%q is neither a CIDR nor an IP address", f)
			}
			a = a.Unmap()
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR: %w", f, err)
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// trusts reports whether a is one of the trusted proxies.
func (t TrustedProxies) trusts(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range t {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ClientAddr is the address req came from: its peer, or, when the peer is a trusted
// proxy, the right-most address in X-Forwarded-For that is not a trusted proxy (the
// hops to its left were written by the client itself, so cannot be believed). If
// every hop is trusted, the left-most one; if a hop cannot be parsed, the last
// trusted one before it. Invalid peers give the zero Addr.
func (t TrustedProxies) ClientAddr(req *http.Request) netip.Addr {
	peer := parseHop(req.RemoteAddr)
	if !peer.IsValid() || len(t) == 0 || !t.trusts(peer) {
		return peer
	}
	client := peer
	values := req.Header.Values("X-Forwarded-For")
	for i := len(values) - 1; i >= 0; i-- {
		hops := strings.Split(values[i], ",")
		for j := len(hops) - 1; j >= 0; j-- {
			hop := parseHop(strings.TrimSpace(hops[j]))
			if !hop.IsValid() {
				return client
			}
			client = hop
			if !t.trusts(hop) {
				return client
			}
		}
	}
	return client
}

// parseHop parses an address as it appears in RemoteAddr or X-Forwarded-For: a
// bare IP, or one with a port ("1.2.3.4:5", "[::1]:5"); the zero Addr if neither.
func parseHop(s string) netip.Addr {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap()
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap()
	}
	if host, _, err := net.SplitHostPort(s); err == nil {
		if a, err := netip.ParseAddr(host); err == nil {
			return a.Unmap()
		}
	}
	return netip.Addr{}
}

// proxyHeaderTimeout bounds how long a trusted proxy may take to send its PROXY
// protocol header.
const proxyHeaderTimeout = 5 * time.Second

// ProxyProtocol wraps ln so that a connection from a trusted proxy must open with a
// PROXY protocol header (v1 or v2), whose source address becomes the connection's
// RemoteAddr; such a connection without one is closed, as the protocol requires
// (a receiver must not guess). Connections from anyone else are served as they are:
// a PROXY header they send is not believed (the HTTP server refuses it as a
// malformed request).
func (t TrustedProxies) ProxyProtocol(ln net.Listener) (net.Listener, error) {
	if len(t) == 0 {
		return nil, errors.New("the PROXY protocol needs trusted proxies to accept it from")
	}
	return &proxyproto.Listener{
		Listener:          ln,
		ReadHeaderTimeout: proxyHeaderTimeout,
		ConnPolicy: func(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
			if a := parseHop(o.Upstream.String()); a.IsValid() && t.trusts(a) {
				return proxyproto.REQUIRE, nil
			}
			return proxyproto.SKIP, nil
		},
	}, nil
}
