package policycache_test

import (
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/dataplane/internal/policycache"
)

// TestConfirmInterval: the check that the policy is current runs three times per max
// age, between once a second and every 10 s, and every 10 s without a max age.
func TestConfirmInterval(t *testing.T) {
	for maxAge, want := range map[time.Duration]time.Duration{
		0:                policycache.DefaultConfirmInterval,
		3 * time.Second:  time.Second,
		2 * time.Second:  time.Second, // never more often than once a second
		15 * time.Second: 5 * time.Second,
		time.Hour:        policycache.DefaultConfirmInterval,
	} {
		if got := policycache.ConfirmInterval(maxAge); got != want {
			t.Errorf("ConfirmInterval(%v) = %v, want %v", maxAge, got, want)
		}
	}
}
