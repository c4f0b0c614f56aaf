package app

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine running: Stop must stop
// the publisher, the HTTP server, the NATS connection, the embedded server and the
// database pool.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
