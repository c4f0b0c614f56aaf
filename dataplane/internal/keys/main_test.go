package keys

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine running: a closed Manager
// has stopped its periodic check, its background reads and its lease keeping.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
