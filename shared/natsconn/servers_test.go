package natsconn

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/portcullis-gw/portcullis/shared/natstest"
	"github.com/portcullis-gw/portcullis/shared/testcerts"
)

// startServer runs an embedded nats-server with JetStream on a random loopback port,
// changed by configure, and stops it when the test ends.
func startServer(t *testing.T, configure func(*server.Options)) *server.Server {
	t.Helper()
	return natstest.StartWith(t, natstest.Options{Configure: configure, NoConn: true}).Server
}

// operator is a NATS operator with a system account and one account with JetStream
// that a test server can trust; all keys are made at test time.
type operator struct {
	claims  *jwt.OperatorClaims
	account nkeys.KeyPair     // signs the account's users
	jwts    map[string]string // account public key -> account JWT
}

func newOperator(t *testing.T) *operator {
	t.Helper()
	okp := must(nkeys.CreateOperator())
	oc := jwt.NewOperatorClaims(must(okp.PublicKey()))
	oc.Name = "test-operator"
	jwts := map[string]string{}
	newAccount := func(name string, edit func(*jwt.AccountClaims)) nkeys.KeyPair {
		kp := must(nkeys.CreateAccount())
		ac := jwt.NewAccountClaims(must(kp.PublicKey()))
		ac.Name = name
		edit(ac)
		jwts[ac.Subject] = must(ac.Encode(okp))
		return kp
	}
	// JetStream needs a system account for its internal subscriptions.
	sys := newAccount("SYS", func(*jwt.AccountClaims) {})
	oc.SystemAccount = must(sys.PublicKey())
	acc := newAccount("portcullis", func(ac *jwt.AccountClaims) {
		ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	})
	return &operator{claims: must(jwt.DecodeOperatorClaims(must(oc.Encode(okp)))), account: acc, jwts: jwts}
}

// configure makes a server trust o and resolve o's account from memory.
func (o *operator) configure(opts *server.Options) {
	resolver := &server.MemAccResolver{}
	for pub, token := range o.jwts {
		if err := resolver.Store(pub, token); err != nil {
			panic(err)
		}
	}
	opts.TrustedOperators = []*jwt.OperatorClaims{o.claims}
	opts.SystemAccount = o.claims.SystemAccount
	opts.AccountResolver = resolver
}

// userCreds returns a .creds file (user JWT and seed) for a new user signed by
// account, with its claims changed by edit.
func userCreds(account nkeys.KeyPair, edit func(*jwt.UserClaims)) []byte {
	ukp := must(nkeys.CreateUser())
	uc := jwt.NewUserClaims(must(ukp.PublicKey()))
	uc.Name = "portcullis-test"
	if edit != nil {
		edit(uc)
	}
	return must(jwt.FormatUserConfig(must(uc.Encode(account)), must(ukp.Seed())))
}

// writeCA makes a CA and a server certificate for 127.0.0.1 signed by it. It
// returns the server's TLS certificate and the path of the CA's PEM certificate.
func writeCA(t *testing.T) (tls.Certificate, string) {
	t.Helper()
	ca := testcerts.NewCA(t)
	return ca.ServerCert(t), ca.WritePEM(t)
}

// requireTLS makes a server present cert to clients and accept only TLS.
func requireTLS(cert tls.Certificate) func(*server.Options) {
	return func(opts *server.Options) {
		opts.TLS = true
		opts.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// must returns v, or panics (failing the test) on a setup error: key generation,
// signing and encoding only fail on a bug in the test.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
