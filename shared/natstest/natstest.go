// Package natstest starts a real nats-server with JetStream for a test: embedded, on
// a random loopback port, with a temporary store, stopped when the test ends. A test
// may stop it and start it again on the same address and store, as an outage would.
package natstest

import (
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/portcullis-gw/portcullis/shared/natsembed"
	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

// Options change how Start runs the server. The zero value is what Start uses.
type Options struct {
	// Configure, when set, changes the server options (TLS, accounts, …).
	Configure func(*server.Options)
	// NoConn starts no connection: Conn and JetStream stay nil, for a test of a
	// client that connects in its own way (TLS, credentials).
	NoConn bool
}

// Server is a running nats-server and a connection to it that reconnects across
// Stop and Restart. Its methods are safe for concurrent use, except that the
// embedded *server.Server and the fields are those of the latest start.
type Server struct {
	*server.Server
	Conn      *nats.Conn
	JetStream jetstream.JetStream

	t        testing.TB
	o        Options
	addr     string     // host:port, kept across restarts
	storeDir string     // the JetStream store, kept across restarts
	mu       sync.Mutex // guards down and the server; Stop and Restart hold it
	down     bool
}

// Start starts a nats-server for t and connects to it; both stop when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith is Start with options.
func StartWith(t testing.TB, o Options) *Server {
	t.Helper()
	s := &Server{t: t, o: o, addr: "127.0.0.1:0", storeDir: t.TempDir()}
	s.start()
	// The address is kept, so that a restart comes back where clients look for it.
	s.addr = hostPort(t, s.Server.ClientURL())
	t.Cleanup(s.Stop)
	if !o.NoConn {
		s.Conn, s.JetStream = s.Connect(t)
	}
	return s
}

// start runs a server on s.addr and s.storeDir. s.mu is held or s is not shared yet.
func (s *Server) start() {
	s.t.Helper()
	ns, err := natsembed.Start(natsembed.Options{Listen: s.addr, StoreDir: s.storeDir, Configure: s.o.Configure})
	if err != nil {
		s.t.Fatalf("start embedded nats-server: %v", err)
	}
	s.Server, s.down = ns, false
}

// URL is the server's client URL; it stays the same across restarts.
func (s *Server) URL() string { return "nats://" + s.addr }

// Connect opens another connection to the server, closed when t ends. It
// reconnects for as long as the server is down, every 20 ms.
func (s *Server) Connect(t testing.TB, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	opts = append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(20 * time.Millisecond)}, opts...)
	nc, err := nats.Connect(s.URL(), opts...)
	if err != nil {
		t.Fatalf("connect to nats: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return nc, js
}

// Stop shuts the server down and waits until it is gone. Stopping a stopped server
// does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return
	}
	s.Server.Shutdown()
	s.Server.WaitForShutdown()
	s.down = true
}

// Restart starts the server again on the same address and store, after Stop (or
// stops it first). Connections from Connect find it again by themselves.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	// The port was just released; the kernel may hold on to it for a moment.
	waitfor.Until(10*time.Second, func() bool {
		l, err := net.Listen("tcp", s.addr)
		if err != nil {
			return false
		}
		l.Close()
		return true
	})
	s.start()
}

// hostPort is the host:port of a server's client URL.
func hostPort(t testing.TB, clientURL string) string {
	t.Helper()
	u, err := url.Parse(clientURL)
	if err != nil || u.Host == "" {
		t.Fatalf("client URL %q: %v", clientURL, err)
	}
	return u.Host
}
