package alerting

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"syscall"
)

// privateRanges are the destinations a webhook may not reach unless private
// destinations are allowed: the unspecified and "this network" addresses, loopback,
// RFC 1918 and unique-local (fc00::/7) networks, link-local (169.254/16, fe80::/10,
// where cloud metadata services live) and carrier-grade NAT (100.64/10).
var privateRanges = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("::/128"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("fe80::/10"),
}

// PrivateAddr reports whether ip is in a range a webhook may not reach by default
// (see privateRanges). An IPv4 address written as IPv6 (::ffff:10.0.0.1) counts as
// the IPv4 address.
func PrivateAddr(ip netip.Addr) bool {
	ip = ip.Unmap().WithZone("")
	for _, p := range privateRanges {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// ErrPrivateDestination is the delivery error of a webhook whose host resolved to a
// private, loopback, link-local, unspecified or CGNAT address while those are not
// allowed.
var ErrPrivateDestination = errors.New("the webhook's host resolves to a private, loopback, link-local or CGNAT address, " +
	"which webhooks may not reach (PORTCULLIS_ALERT_WEBHOOK_ALLOW_PRIVATE=true allows it)")

// CheckURL is the configuration-time check of a webhook URL: an absolute http(s)
// URL without user info or fragment, whose host, when it is an IP literal, is not a
// private address unless allowPrivate. A host name is checked when it is resolved,
// at each delivery. It returns "" for a good URL, else the reason.
func CheckURL(raw string, allowPrivate bool) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "must be an absolute http(s) URL"
	}
	if u.User != nil || u.Fragment != "" {
		return "must not carry user info or a fragment"
	}
	if ip, err := netip.ParseAddr(u.Hostname()); err == nil && !allowPrivate && PrivateAddr(ip) {
		return fmt.Sprintf("its host %s is a private, loopback, link-local, unspecified or CGNAT address, "+
			"which webhooks may not reach unless the control plane sets alert-webhook-allow-private (PORTCULLIS_ALERT_WEBHOOK_ALLOW_PRIVATE=true)", ip)
	}
	return ""
}

// guardDial is a net.Dialer Control function that refuses a connection to a private
// address (PrivateAddr). It runs on the resolved address of every connection, so a
// host name that resolves, or is rebound, to such an address is refused too.
func guardDial(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("webhook destination %q: %w", address, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("webhook destination %q is not an IP address", host)
	}
	if PrivateAddr(ip) {
		return fmt.Errorf("%w: %s", ErrPrivateDestination, ip.WithZone(""))
	}
	return nil
}
