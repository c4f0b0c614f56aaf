package api

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestParseTrustedProxies(t *testing.T) {
	got, err := ParseTrustedProxies(" 10.0.0.0/8, 127.0.0.1 ,::1, 192.168.1.7/24,")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "127.0.0.1/32", "::1/128", "192.168.1.0/24"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "lb.internal", "10.0.0.0/8;rm"} {
		if _, err := ParseTrustedProxies(bad); err == nil || !strings.Contains(err.Error(), "10.0.0.0") && !strings.Contains(err.Error(), bad) {
			t.Fatalf("ParseTrustedProxies(%q) = %v, want an error naming it", bad, err)
		}
	}
	if none, err := ParseTrustedProxies(""); err != nil || len(none) != 0 {
		t.Fatalf("empty: %v %v", none, err)
	}
}

func TestClientAddr(t *testing.T) {
	trusted, err := ParseTrustedProxies("127.0.0.1/32,10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		trusted TrustedProxies
		peer    string
		xff     []string
		want    string
	}{
		{name: "no trusted proxies: the header is ignored", peer: "127.0.0.1:5000", xff: []string{"203.0.113.9"}, want: "127.0.0.1"},
		{name: "untrusted peer: the header is ignored", trusted: trusted, peer: "198.51.100.4:5000", xff: []string{"203.0.113.9"}, want: "198.51.100.4"},
		{name: "trusted peer: the forwarded client", trusted: trusted, peer: "127.0.0.1:5000", xff: []string{"203.0.113.9"}, want: "203.0.113.9"},
		{name: "a client-written hop left of the real one is not believed", trusted: trusted, peer: "127.0.0.1:5000",
			xff: []string{"1.1.1.1, 203.0.113.9"}, want: "203.0.113.9"},
		{name: "trusted hops are skipped right to left", trusted: trusted, peer: "127.0.0.1:5000",
			xff: []string{"1.1.1.1, 203.0.113.9, 10.1.2.3", "10.9.9.9"}, want: "203.0.113.9"},
		{name: "every hop trusted: the left-most", trusted: trusted, peer: "127.0.0.1:5000", xff: []string{"10.1.1.1, 10.2.2.2"}, want: "10.1.1.1"},
		{name: "garbage hop: the last trusted one", trusted: trusted, peer: "127.0.0.1:5000", xff: []string{"not-an-ip, 10.2.2.2"}, want: "10.2.2.2"},
		{name: "no header: the peer", trusted: trusted, peer: "127.0.0.1:5000", want: "127.0.0.1"},
		{name: "hops with ports and v6", trusted: trusted, peer: "127.0.0.1:5000", xff: []string{"[2001:db8::7]:443"}, want: "2001:db8::7"},
		{name: "v4-mapped peer is trusted as v4", trusted: trusted, peer: "[::ffff:127.0.0.1]:5000", xff: []string{"203.0.113.9"}, want: "203.0.113.9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, "/", nil)
			req.RemoteAddr = tt.peer
			for _, v := range tt.xff {
				req.Header.Add("X-Forwarded-For", v)
			}
			if got := tt.trusted.ClientAddr(req); got.String() != tt.want {
				t.Fatalf("ClientAddr = %s, want %s", got, tt.want)
			}
		})
	}
	if got := sourceNet(netip.MustParseAddr("203.0.113.9")); got != "203.0.113.0/24" {
		t.Fatalf("sourceNet = %q", got)
	}
	if got := sourceNet(netip.Addr{}); got != "" {
		t.Fatalf("sourceNet(invalid) = %q", got)
	}
}

// TestProxyProtocol: a trusted peer's PROXY header sets the remote address, a
// trusted peer without one is cut off, and an untrusted peer's header is not
// believed.
func TestProxyProtocol(t *testing.T) {
	if _, err := TrustedProxies(nil).ProxyProtocol(nil); err == nil {
		t.Fatal("the PROXY protocol without trusted proxies was accepted")
	}
	serve := func(t *testing.T, trusted string) string {
		tp, err := ParseTrustedProxies(trusted)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		pl, err := tp.ProxyProtocol(ln)
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, tp.ClientAddr(r))
		})}
		go func() { _ = srv.Serve(pl) }()
		t.Cleanup(func() { _ = srv.Close() })
		return ln.Addr().String()
	}
	send := func(t *testing.T, addr, preface string) string {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "%sGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", preface)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return "error: " + err.Error()
		}
		defer resp.Body.Close()
		var b strings.Builder
		_, _ = bufio.NewReader(resp.Body).WriteTo(&b)
		return fmt.Sprint(resp.StatusCode, " ", b.String())
	}
	header := "PROXY TCP4 203.0.113.9 127.0.0.1 40000 80\r\n"
	t.Run("trusted peer with a header", func(t *testing.T) {
		if got := send(t, serve(t, "127.0.0.1/32"), header); got != "200 203.0.113.9" {
			t.Fatalf("got %q, want the header's source", got)
		}
	})
	t.Run("trusted peer without a header is refused", func(t *testing.T) {
		if got := send(t, serve(t, "127.0.0.1/32"), ""); !strings.HasPrefix(got, "error") {
			t.Fatalf("got %q, want the connection closed", got)
		}
	})
	t.Run("untrusted peer's header is not believed", func(t *testing.T) {
		if got := send(t, serve(t, "10.0.0.0/8"), header); !strings.HasPrefix(got, "400") {
			t.Fatalf("got %q, want a 400 for the malformed request", got)
		}
		if got := send(t, serve(t, "10.0.0.0/8"), ""); got != "200 127.0.0.1" {
			t.Fatalf("got %q, want the peer", got)
		}
	})
}
