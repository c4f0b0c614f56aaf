package health

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/shared/health"
)

// lagRecorder records the collector's OnPolicyLag calls; fail makes the next call
// fail.
type lagRecorder struct {
	mu    sync.Mutex
	calls []PolicyLag
	fail  bool
}

func (r *lagRecorder) onLag(_ context.Context, lag PolicyLag) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, lag)
	if r.fail {
		r.fail = false
		return errors.New("the alerts table is unreachable")
	}
	return nil
}

func (r *lagRecorder) taken() []PolicyLag {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.calls
	r.calls = nil
	return out
}

// settle waits until the collector has handled every report sent before: reports
// are handled in order, the policy lag check of each right after it, so once a
// report sent after them is counted, they are done.
func (f *fixture) settle() {
	f.t.Helper()
	f.send("health.eu.settle", []byte("not a report"), "rejected")
}

// TestCollectorPolicyLag: a worker whose reports show a policy version behind the
// published one for PolicyLagAfter is reported once per worker and version; a worker
// that keeps up, or lags less, is not; a failed report is told again at the next
// report; catching up ends the lag.
func TestCollectorPolicyLag(t *testing.T) {
	var published atomic.Int64
	published.Store(5)
	rec := &lagRecorder{}
	f := newFixture(t, func(o *Options) {
		o.PublishedVersion, o.PolicyLagAfter, o.OnPolicyLag = published.Load, 2*time.Minute, rec.onLag
	})
	step := func(d time.Duration, reports ...health.Report) []PolicyLag {
		t.Helper()
		f.clock.advance(d)
		for _, r := range reports {
			f.report(r)
		}
		f.settle()
		return rec.taken()
	}
	expectNone := func(what string, got []PolicyLag) {
		t.Helper()
		if len(got) != 0 {
			t.Fatalf("%s: told of %+v, want nothing", what, got)
		}
	}

	expectNone("in step", step(0, report("w1", "eu", 5), report("w2", "eu", 5)))
	published.Store(6)
	lagFrom := f.clock.Now().Add(health.Interval)
	expectNone("the first report behind", step(health.Interval, report("w1", "eu", 5), report("w2", "eu", 6)))
	expectNone("behind for a minute", step(time.Minute, report("w1", "eu", 5), report("w2", "eu", 6)))

	rec.fail = true
	got := step(time.Minute, report("w1", "eu", 5), report("w2", "eu", 6))
	if len(got) != 1 {
		t.Fatalf("behind for 2 minutes: told %+v, want w1 once", got)
	}
	got = step(health.Interval, report("w1", "eu", 5))
	if len(got) != 1 {
		t.Fatalf("after a failed alert: told %+v, want w1 again", got)
	}
	want := PolicyLag{Worker: "w1", Region: "eu", Version: 5, PublishedVersion: 6, Since: lagFrom, For: 2*time.Minute + health.Interval}
	if got[0] != want {
		t.Fatalf("told %+v, want %+v", got[0], want)
	}
	expectNone("once per worker and version", step(health.Interval, report("w1", "eu", 5), report("w2", "eu", 6)))

	// w1 moves to 6 while 7 is out: it has been behind all along, and is reported at
	// its new version at once.
	published.Store(7)
	got = step(health.Interval, report("w1", "eu", 6), report("w2", "eu", 7))
	if len(got) != 1 || got[0].Version != 6 || got[0].PublishedVersion != 7 || !got[0].Since.Equal(lagFrom) {
		t.Fatalf("told %+v, want w1 at version 6, lagging since %v", got, lagFrom)
	}
	expectNone("once per worker and version", step(time.Minute, report("w1", "eu", 6), report("w2", "eu", 7)))

	// Caught up, the lag ends; a new one starts from scratch.
	expectNone("caught up", step(health.Interval, report("w1", "eu", 7)))
	published.Store(8)
	expectNone("behind again, briefly", step(health.Interval, report("w1", "eu", 7)))
	expectNone("behind again, for a minute", step(time.Minute, report("w1", "eu", 7)))
	if got := step(time.Minute, report("w1", "eu", 7)); len(got) != 1 || got[0].Version != 7 || got[0].For != 2*time.Minute {
		t.Fatalf("told %+v, want w1 at version 7 after 2 minutes", got)
	}

	// A worker that never got a policy (version 0) lags too.
	expectNone("no policy yet", step(health.Interval, report("w3", "us", 0)))
	if got := step(2*time.Minute, report("w3", "us", 0)); len(got) != 1 || got[0].Worker != "w3" || got[0].Version != 0 {
		t.Fatalf("told %+v, want w3 at version 0", got)
	}
}

// TestCollectorPolicyLagOff: with PolicyLagAfter 0, or before any publish, nothing is
// told however long a worker lags.
func TestCollectorPolicyLagOff(t *testing.T) {
	for name, o := range map[string]struct {
		after     time.Duration
		published int64
	}{"off": {0, 9}, "nothing published": {time.Second, 0}} {
		t.Run(name, func(t *testing.T) {
			rec := &lagRecorder{}
			f := newFixture(t, func(opts *Options) {
				opts.PublishedVersion, opts.PolicyLagAfter, opts.OnPolicyLag = func() int64 { return o.published }, o.after, rec.onLag
			})
			for range 3 {
				f.report(report("w1", "eu", 1))
				f.clock.advance(time.Hour)
			}
			f.report(report("w1", "eu", 1))
			f.settle()
			if got := rec.taken(); len(got) != 0 {
				t.Fatalf("told %+v, want nothing", got)
			}
		})
	}
}
