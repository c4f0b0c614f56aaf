// Package natstest starts a real nats-server with JetStream for a test: embedded, on
// a random loopback port, with a temporary store, stopped when the test ends.
package natstest

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/portcullis-gw/portcullis/shared/natsembed"
)

// Server is a running nats-server and a connection to it.
type Server struct {
	*server.Server
	Conn      *nats.Conn
	JetStream jetstream.JetStream
}

// Start starts a nats-server for t and connects to it; both stop when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	ns, err := natsembed.Start(natsembed.Options{Listen: "127.0.0.1:0", StoreDir: t.TempDir()})
	if err != nil {
		t.Fatalf("start embedded nats-server: %v", err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatalf("connect to nats: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return &Server{Server: ns, Conn: nc, JetStream: js}
}
