package upstream

import (
	"testing"
	"time"
)

func TestErrorWindowSlides(t *testing.T) {
	w := newErrorWindow(3 * time.Second)
	t0 := time.Unix(1_700_000_000, 0)
	w.record(t0, Failure)
	w.record(t0, Success)
	w.record(t0.Add(time.Second), Failure)
	w.record(t0.Add(time.Second), Ignored)
	if rate, n := w.rate(t0.Add(time.Second)); n != 3 || rate < 0.66 || rate > 0.67 {
		t.Fatalf("rate %v over %d, want 2/3 over 3", rate, n)
	}
	// The first second leaves the 3 s window at t0+3s; the second at t0+4s.
	if rate, n := w.rate(t0.Add(3 * time.Second)); n != 1 || rate != 1 {
		t.Fatalf("after 3 s: rate %v over %d, want 1 over 1", rate, n)
	}
	if _, n := w.rate(t0.Add(time.Hour)); n != 0 {
		t.Fatalf("after an hour: %d outcomes left", n)
	}
	w.record(t0.Add(time.Hour), Success)
	if rate, n := w.rate(t0.Add(time.Hour)); n != 1 || rate != 0 {
		t.Fatalf("after a fresh success: rate %v over %d", rate, n)
	}
}
