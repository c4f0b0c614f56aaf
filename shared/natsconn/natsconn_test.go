package natsconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/portcullis-gw/portcullis/shared/logtest"
	"github.com/portcullis-gw/portcullis/shared/testcerts"
)

func TestConnect(t *testing.T) {
	op := newOperator(t)
	authSrv := startServer(t, op.configure)
	creds := writeFile(t, "user.creds", userCreds(op.account, nil))
	stranger := writeFile(t, "stranger.creds", userCreds(must(nkeys.CreateAccount()), nil))

	cert, caFile := writeCA(t)
	_, otherCA := writeCA(t)
	tlsSrv := startServer(t, requireTLS(cert))
	prodSrv := startServer(t, func(o *server.Options) { op.configure(o); requireTLS(cert)(o) })
	ca := testcerts.NewCA(t)
	mtlsSrv := startServer(t, func(o *server.Options) {
		op.configure(o)
		requireTLS(ca.ServerCert(t))(o)
		o.TLSVerify = true
		o.TLSConfig.ClientAuth = tls.RequireAndVerifyClientCert
		o.TLSConfig.ClientCAs = x509.NewCertPool()
		o.TLSConfig.ClientCAs.AddCert(ca.Cert)
	})
	mtlsCA := ca.WritePEM(t)
	clientCert, clientKey := testcerts.WritePair(t, ca.ClientCert(t, "dp-eu"))
	strangerCert, strangerKey := testcerts.WritePair(t, testcerts.NewCA(t).ClientCert(t, "dp-eu"))

	tests := []struct {
		name    string
		o       Options
		wantErr error // nil: the connection must work for JetStream KV
	}{
		{name: "creds of a user of the trusted account", o: Options{URL: authSrv.ClientURL(), CredsFile: creds}},
		{name: "no creds", o: Options{URL: authSrv.ClientURL()}, wantErr: nats.ErrAuthorization},
		{name: "creds of an unknown account", o: Options{URL: authSrv.ClientURL(), CredsFile: stranger}, wantErr: nats.ErrAuthorization},
		{name: "a CA file requires TLS", o: Options{URL: authSrv.ClientURL(), CredsFile: creds, CAFile: caFile}, wantErr: nats.ErrSecureConnWanted},
		{name: "server cert signed by the CA", o: Options{URL: tlsSrv.ClientURL(), CAFile: caFile}},
		{name: "no CA file: the system roots do not trust the server", o: Options{URL: tlsSrv.ClientURL()}, wantErr: nats.ErrTLS},
		{name: "creds over TLS", o: Options{URL: prodSrv.ClientURL(), CredsFile: creds, CAFile: caFile}},
		{name: "TLS without creds", o: Options{URL: prodSrv.ClientURL(), CAFile: caFile}, wantErr: nats.ErrAuthorization},
		{name: "another CA", o: Options{URL: tlsSrv.ClientURL(), CAFile: otherCA}, wantErr: nats.ErrTLS},
		{name: "client certificate and creds", o: Options{URL: mtlsSrv.ClientURL(), CredsFile: creds, CAFile: mtlsCA,
			CertFile: clientCert, KeyFile: clientKey}},
		{name: "no client certificate", o: Options{URL: mtlsSrv.ClientURL(), CredsFile: creds, CAFile: mtlsCA}, wantErr: errAny},
		{name: "client certificate of another CA", o: Options{URL: mtlsSrv.ClientURL(), CredsFile: creds, CAFile: mtlsCA,
			CertFile: strangerCert, KeyFile: strangerKey}, wantErr: errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.Name = "natsconn-test"
			var logs logtest.Buffer
			nc, err := Connect(tt.o, slog.New(slog.NewJSONHandler(&logs, nil)), nats.Timeout(5*time.Second))
			if err == nil {
				err = useKV(nc)
				nc.Close()
			}
			if tt.wantErr == errAny && err != nil {
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got error %v, want %v", err, tt.wantErr)
			}
			for _, secret := range secrets(t, tt.o.CredsFile) {
				if strings.Contains(logs.String(), secret) || strings.Contains(fmt.Sprint(err), secret) {
					t.Fatalf("the log or error shows a secret of the creds file:\n%s\n%v", logs.String(), err)
				}
			}
		})
	}
}

// errAny stands for any error: a TLS handshake the server fails shows as a closed
// connection or a TLS error, depending on timing.
var errAny = errors.New("any error")

// secrets returns the user JWT and the seed of a creds file, none for "".
func secrets(t *testing.T, path string) []string {
	t.Helper()
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := jwt.ParseDecoratedUserNKey(data)
	if err != nil {
		t.Fatal(err)
	}
	return []string{must(jwt.ParseDecoratedJWT(data)), string(must(kp.Seed()))}
}

// useKV writes a key to a JetStream KV bucket and reads it back.
func useKV(nc *nats.Conn) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "NATSCONN_TEST"})
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		return err
	}
	e, err := kv.Get(ctx, "k")
	if err != nil {
		return err
	}
	if string(e.Value()) != "v" {
		return errors.New("read back " + string(e.Value()))
	}
	return nil
}
