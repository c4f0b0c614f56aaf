package app

import (
	"errors"
	"io"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/portcullis-gw/portcullis/shared/logging"
	"github.com/portcullis-gw/portcullis/shared/natstest"
	"github.com/portcullis-gw/portcullis/shared/testcerts"
)

// A configured CA file must reach the connection: it makes TLS required, which a
// plain server cannot offer.
func TestConnectNATSUsesTheConfiguredCAFile(t *testing.T) {
	s := natstest.StartWith(t, natstest.Options{NoConn: true})

	tests := []struct {
		name    string
		caFile  string
		wantErr error
	}{
		{name: "no CA file", caFile: ""},
		{name: "a CA file requires TLS", caFile: writeTestCA(t), wantErr: nats.ErrSecureConnWanted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{NATSURL: s.ClientURL(), NATSCAFile: tt.caFile}
			nc, err := connectNATS(cfg, cfg.NATSURL, logging.New(io.Discard, "info"))
			if err == nil {
				nc.Close()
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("connectNATS error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// writeTestCA writes a self-signed CA certificate made at test time and returns its path.
func writeTestCA(t *testing.T) string {
	t.Helper()
	return testcerts.NewCA(t).WritePEM(t)
}
