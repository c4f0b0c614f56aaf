package waitfor

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	var calls atomic.Int32
	if !Until(time.Second, func() bool { return calls.Add(1) == 3 }) {
		t.Fatal("a condition that comes true was not seen")
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("polled %d times after it held at the third", n)
	}
	if Until(30*time.Millisecond, func() bool { return false }) {
		t.Fatal("a condition that never holds was reported as held")
	}
}

// recorder is a testing.TB that records a Fatalf instead of ending the test.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = format
}

func TestWithinFailsNamingWhat(t *testing.T) {
	r := &recorder{TB: t}
	Within(r, 20*time.Millisecond, "the thing", func() bool { return false })
	if r.failed == "" {
		t.Fatal("Within did not fail on a condition that never held")
	}
	r = &recorder{TB: t}
	That(r, "the thing", func() bool { return true })
	if r.failed != "" {
		t.Fatal("That failed on a condition that held")
	}
}
