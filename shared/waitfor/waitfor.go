// Package waitfor is the one way the project's tests wait for something to happen:
// they poll a condition until it holds, instead of sleeping for a guessed time.
package waitfor

import (
	"testing"
	"time"
)

// DefaultTimeout is how long That waits. It is generous: a condition that holds
// returns as soon as it does, and only a failing test waits this long.
const DefaultTimeout = 30 * time.Second

// pollInterval is how often a condition is checked.
const pollInterval = 10 * time.Millisecond

// That polls cond until it holds and returns how long that took; it fails t, naming
// what it waited for, when cond does not hold within DefaultTimeout.
func That(t testing.TB, what string, cond func() bool) time.Duration {
	t.Helper()
	return Within(t, DefaultTimeout, what, cond)
}

// Within is That with its own timeout.
func Within(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	if !Until(timeout, cond) {
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
	return time.Since(start)
}

// Until polls cond until it holds or timeout passes, and reports whether it held;
// for a test that decides itself what a timeout means.
func Until(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for !cond() {
		if !time.Now().Before(deadline) {
			return false
		}
		<-ticker.C
	}
	return true
}
