package app

import (
	"testing"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/portcullis-gw/portcullis/shared/natsauth"
)

// TestMain fails the package if any test leaves a goroutine running: Stop must stop
// the publisher, the HTTP server, the NATS connection, the embedded server and the
// database pool.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// asControlPlane is the option that connects to a's embedded nats-server with the
// control plane's credentials: it requires credentials of every client.
func asControlPlane(t testing.TB, a *App) nats.Option {
	t.Helper()
	creds, err := a.NATSCreds(natsauth.ControlPlane())
	if err != nil {
		t.Fatal(err)
	}
	return nats.UserCredentials(creds)
}
