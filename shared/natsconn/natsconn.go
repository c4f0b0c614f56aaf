// Package natsconn connects a Portcullis binary to NATS, the same way on both sides
// of the wire: one client name, optional user credentials (a .creds file holding a
// user JWT and its nkey seed) and an optional CA file for verifying the servers' TLS
// certificates, endless reconnects, and log lines that never carry a credential.
package natsconn

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/portcullis-gw/portcullis/shared/natsnames"
)

// Options says where and how to connect. Only URL is required.
type Options struct {
	// URL is one NATS server URL or several, comma-separated.
	URL string
	// CredsFile is a NATS user credentials file (user JWT and nkey seed). nats.go
	// reads it again on every reconnect, so it can be rotated in place.
	CredsFile string
	// CAFile is a PEM file with the CA certificates that sign the servers'
	// certificates. Setting it requires TLS. Verification is always on.
	CAFile string
	// CertFile and KeyFile are a client certificate and its key, for servers that
	// verify clients. Both or neither.
	CertFile, KeyFile string
	// Name is the connection name the server shows in its monitoring.
	Name string
}

// JetStream is the JetStream context of a connection made with o: through the API
// prefix its credentials name (CredsJSAPIPrefix), if any.
func JetStream(nc *nats.Conn, o Options, opts ...jetstream.JetStreamOpt) (jetstream.JetStream, error) {
	if prefix := CredsJSAPIPrefix(o.CredsFile); prefix != "" {
		return jetstream.NewWithAPIPrefix(nc, prefix, opts...)
	}
	return jetstream.New(nc, opts...)
}

// Connect connects with o, with the inbox prefix _INBOX.<user name> when the
// credentials' user JWT names the user (NATS permissions give each Portcullis
// identity its own inbox only), reconnecting forever (once a second) for the life of the
// connection, and logs disconnects, reconnects and asynchronous errors to log. The
// extra options are applied last, so a caller can add to or override these, e.g.
// nats.RetryOnFailedConnect(true) or nats.Timeout.
func Connect(o Options, log *slog.Logger, extra ...nats.Option) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			log.Info("nats reconnected", "url", c.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(c *nats.Conn, sub *nats.Subscription, err error) {
			attrs := []any{"err", err, "url", c.ConnectedUrlRedacted()}
			if sub != nil {
				attrs = append(attrs, "subject", sub.Subject)
			}
			log.Warn("nats error", attrs...)
		}),
	}
	if o.CredsFile == "" {
		log.Warn("connecting to NATS without credentials: any process that reaches this server can rewrite what Portcullis reads from it (docs/nats.md)")
	}
	if o.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(o.CredsFile))
		if user := CredsUserName(o.CredsFile); user != "" {
			opts = append(opts, nats.CustomInboxPrefix(natsnames.InboxPrefix(user)))
		}
	}
	if o.CAFile != "" {
		opts = append(opts, nats.RootCAs(o.CAFile))
	}
	if o.CertFile != "" {
		opts = append(opts, nats.ClientCert(o.CertFile, o.KeyFile))
	}
	nc, err := nats.Connect(o.URL, append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats: %w", err)
	}
	return nc, nil
}
