// Package natsembed starts an in-process nats-server with JetStream, as Portcullis does
// in dev mode (when no NATS URL is configured) and in every test.
package natsembed

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options configures an embedded server.
type Options struct {
	// Listen is host:port. A port of 0 or -1 picks a random free port.
	Listen string
	// StoreDir is where JetStream keeps its data. Required.
	StoreDir string
	// ServerName names the server; defaults to "portcullis-embedded".
	ServerName string
	// Configure, when set, may change the server options just before the server is
	// created, e.g. to require TLS or to trust an operator (tests use it).
	Configure func(*server.Options)
}

// Start runs a nats-server with JetStream and waits until it accepts connections.
// The caller owns the server and must call Shutdown (and WaitForShutdown).
func Start(o Options) (*server.Server, error) {
	if o.StoreDir == "" {
		return nil, fmt.Errorf("embedded nats: store dir is required")
	}
	host, portStr, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: listen %q: %w", o.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: listen %q: bad port", o.Listen)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	name := o.ServerName
	if name == "" {
		name = "portcullis-embedded"
	}
	opts := &server.Options{
		ServerName: name,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		NoSigs:     true,
		NoLog:      true,
	}
	if o.Configure != nil {
		o.Configure(opts)
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready on %s after 10s", o.Listen)
	}
	return s, nil
}
