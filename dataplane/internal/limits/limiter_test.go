package limits

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/portcullis-gw/portcullis/shared/natsbuckets"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/natstest"
	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// cluster is one embedded nats-server with the buckets, and limiters ("workers")
// on it, each with its own connection.
type cluster struct {
	t       *testing.T
	ns      *natstest.Server
	js      jetstream.JetStream
	workerT time.Duration
	now     func() time.Time // every worker's clock, see shiftedClock
}

// shiftedClock is the wall clock moved so that it reads two seconds past the next
// full hour when the test starts: a test shorter than 58 s sees no minute or hour
// window turn, without waiting for the wall clock to. The counters' keys and the
// heartbeats all follow it; NATS's TTLs are durations, so they are unaffected.
func shiftedClock() func() time.Time {
	start := time.Now()
	offset := start.Truncate(time.Hour).Add(time.Hour + 2*time.Second).Sub(start)
	return func() time.Time { return time.Now().Add(offset) }
}

func newCluster(t *testing.T, workerTTL time.Duration) *cluster {
	t.Helper()
	ns := natstest.Start(t)
	js := ns.JetStream
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := natsbuckets.Ensure(ctx, js, natsbuckets.Options{WorkerTTL: workerTTL}); err != nil {
		t.Fatal(err)
	}
	return &cluster{t: t, ns: ns, js: js, workerT: workerTTL, now: shiftedClock()}
}

type worker struct {
	*Limiter
	nc       *nats.Conn
	reg      *prometheus.Registry
	cut      atomic.Bool // simulates NATS being unreachable
	cancel   context.CancelFunc
	done     chan struct{}
	stopOnce sync.Once
}

func (c *cluster) worker(name string, mutate func(*Options)) *worker {
	c.t.Helper()
	nc, err := nats.Connect(c.ns.URL())
	if err != nil {
		c.t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		c.t.Fatal(err)
	}
	w := &worker{nc: nc, reg: prometheus.NewRegistry(), done: make(chan struct{})}
	o := Options{JetStream: js, WorkerID: name, Region: "eu", Registerer: w.reg, Now: c.now,
		Connected: func() bool { return !w.cut.Load() && nc.IsConnected() }}
	if mutate != nil {
		mutate(&o)
	}
	w.Limiter, err = New(o)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go func() { defer close(w.done); _ = w.Run(ctx) }()
	c.t.Cleanup(w.stop)
	waitfor.Within(c.t, 10*time.Second, "limiter ready", w.Ready)
	return w
}

// stop shuts the worker down cleanly.
func (w *worker) stop() {
	w.stopOnce.Do(func() {
		w.cancel()
		<-w.done
		w.nc.Close()
	})
}

// waitLive waits until every worker counts all of them as live, as they do a
// heartbeat interval after the last one started.
func (c *cluster) waitLive(ws ...*worker) {
	c.t.Helper()
	waitfor.Within(c.t, 15*time.Second, "workers to see each other", func() bool {
		for _, w := range ws {
			if w.liveWorkers() != int64(len(ws)) {
				return false
			}
		}
		return true
	})
}

// crash stops the worker the way a crash would: no lease given back, no heartbeat
// removed.
func (w *worker) crash() {
	w.cut.Store(true)
	w.stop()
}

// counter reads a window counter straight from the bucket.
func (c *cluster) counter(key string) int64 {
	c.t.Helper()
	kv, err := c.js.KeyValue(context.Background(), natsnames.LimitsBucket)
	if err != nil {
		c.t.Fatal(err)
	}
	e, err := kv.Get(context.Background(), key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0
	}
	if err != nil {
		c.t.Fatal(err)
	}
	n, err := strconv.ParseInt(string(e.Value()), 10, 64)
	if err != nil {
		c.t.Fatal(err)
	}
	return n
}

func minuteKey(client string, now time.Time) string {
	return natsnames.LimitsRequestsPrefix + natsnames.LimitsClientKey(client) + "." + strconv.FormatInt(now.Truncate(time.Minute).Unix(), 10)
}

func hourKey(client string, now time.Time) string {
	return natsnames.LimitsTokensPrefix + natsnames.LimitsClientKey(client) + "." + strconv.FormatInt(now.Truncate(time.Hour).Unix(), 10)
}

func TestExactRequestsPerMinuteAcrossWorkers(t *testing.T) {
	c := newCluster(t, 0)
	workers := []*worker{c.worker("w1", nil), c.worker("w2", nil), c.worker("w3", nil)}
	c.waitLive(workers...)
	const limit, perWorker = 50, 40
	for run := range 20 {
		client := "client-" + strconv.Itoa(run)
		var admitted, denied atomic.Int64
		var wg sync.WaitGroup
		for _, w := range workers {
			for range perWorker {
				wg.Go(func() {
					time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
					tk, err := w.Admit(context.Background(), client, Limits{RequestsPerMinute: limit}, 0)
					var d *Denied
					switch {
					case err == nil:
						admitted.Add(1)
						tk.Finish(0)
					case errors.As(err, &d):
						denied.Add(1)
						if d.Kind != KindRequests || d.RetryAfter <= 0 || d.RetryAfter > time.Minute {
							t.Errorf("denial %+v: want kind requests and 0 < Retry-After <= 1m", d)
						}
					default:
						t.Errorf("admit: %v", err)
					}
				})
			}
		}
		wg.Wait()
		if admitted.Load() != limit || denied.Load() != 3*perWorker-limit {
			t.Fatalf("run %d: admitted %d, denied %d; want exactly %d admitted", run, admitted.Load(), denied.Load(), limit)
		}
		if got := c.counter(minuteKey(client, c.now())); got != limit {
			t.Fatalf("run %d: counter %d, want %d", run, got, limit)
		}
	}
}

func TestTokensSettleToUsage(t *testing.T) {
	c := newCluster(t, 0)
	w1, w2 := c.worker("w1", nil), c.worker("w2", nil)
	const limit = 1000
	client := "tok"
	var settled int64
	admitted := 0
	for i := 0; ; i++ {
		w := []*worker{w1, w2}[i%2]
		tk, err := w.Admit(context.Background(), client, Limits{TokensPerHour: limit}, 150)
		if err != nil {
			var d *Denied
			if !errors.As(err, &d) || d.Kind != KindTokens {
				t.Fatalf("admit %d: %v", i, err)
			}
			break
		}
		admitted++
		used := int64(60 + i%7)
		settled += used
		tk.Finish(used)
		if i > 100 {
			t.Fatal("admissions never stopped")
		}
	}
	// Admission stops once less than one reservation (150) is left.
	if settled > limit || limit-settled >= 150+150 {
		t.Fatalf("settled %d tokens over %d admissions; want the budget used up to within one reservation", settled, admitted)
	}
	waitfor.Within(t, 10*time.Second, "idle leases given back", func() bool {
		return c.counter(hourKey(client, c.now())) == settled
	})
}

func TestTokensUnderestimateIsCharged(t *testing.T) {
	c := newCluster(t, 0)
	w := c.worker("w1", nil)
	tk, err := w.Admit(context.Background(), "under", Limits{TokensPerHour: 1000}, 100)
	if err != nil {
		t.Fatal(err)
	}
	tk.Finish(250)
	waitfor.Within(t, 10*time.Second, "overrun charged", func() bool { return c.counter(hourKey("under", c.now())) == 250 })
	if _, err := w.Admit(context.Background(), "under", Limits{TokensPerHour: 1000}, 800); err == nil {
		t.Fatal("admitted 800 tokens with 750 left")
	}
}

func TestTooLargeReservation(t *testing.T) {
	c := newCluster(t, 0)
	w := c.worker("w1", nil)
	_, err := w.Admit(context.Background(), "big", Limits{TokensPerHour: 100}, 101)
	var d *Denied
	if !errors.As(err, &d) || !d.TooLarge || d.Kind != KindTokens {
		t.Fatalf("err %v, want a too-large tokens denial", err)
	}
}

func TestExactConcurrencyAcrossWorkers(t *testing.T) {
	c := newCluster(t, 0)
	workers := []*worker{c.worker("w1", nil), c.worker("w2", nil), c.worker("w3", nil)}
	c.waitLive(workers...)
	const limit = 5
	var inFlight, peak, admitted atomic.Int64
	var wg sync.WaitGroup
	for i := range 60 {
		w := workers[i%3]
		wg.Go(func() {
			for range 10 {
				tk, err := w.Admit(context.Background(), "conc", Limits{MaxConcurrentRequests: limit}, 0)
				if err != nil {
					var d *Denied
					if !errors.As(err, &d) || d.Kind != KindConcurrency || d.RetryAfter <= 0 {
						t.Errorf("admit: %v", err)
					}
					time.Sleep(2 * time.Millisecond)
					continue
				}
				admitted.Add(1)
				n := inFlight.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				time.Sleep(20 * time.Millisecond) // long enough for the slots to fill up
				inFlight.Add(-1)
				tk.Finish(0)
			}
		})
	}
	wg.Wait()
	if peak.Load() > limit {
		t.Fatalf("peak in flight %d > limit %d", peak.Load(), limit)
	}
	if peak.Load() < limit || admitted.Load() < limit {
		t.Fatalf("peak %d, admitted %d: the limit was never reached", peak.Load(), admitted.Load())
	}
}

func TestCrashedWorkersSlotsAreReclaimed(t *testing.T) {
	c := newCluster(t, 3*time.Second)
	a, b := c.worker("a", nil), c.worker("b", nil)
	lim := Limits{MaxConcurrentRequests: 5}
	for range 3 {
		if _, err := a.Admit(context.Background(), "crash", lim, 0); err != nil {
			t.Fatal(err)
		}
	}
	a.crash()
	crashed := time.Now()
	// b can take 2 at once, and all 5 once a's heartbeat has expired.
	var held []*Ticket
	waitfor.Within(t, 15*time.Second, "all 5 slots usable again", func() bool {
		tk, err := b.Admit(context.Background(), "crash", lim, 0)
		if err == nil {
			held = append(held, tk)
		}
		return len(held) == 5
	})
	if since := time.Since(crashed); since < 2*time.Second {
		t.Fatalf("slots reclaimed after %s, before the heartbeat TTL could expire", since)
	}
	t.Logf("reclaimed %s after the crash (heartbeat TTL 3s)", time.Since(crashed).Round(100*time.Millisecond))
}

func TestFailClosed(t *testing.T) {
	c := newCluster(t, 0)
	w := c.worker("w1", nil)
	w.cut.Store(true)
	_, err := w.Admit(context.Background(), "fc", Limits{RequestsPerMinute: 10}, 0)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err %v, want ErrUnavailable", err)
	}
	if v := testutil.ToFloat64(w.metrics.available); v != 0 {
		t.Fatalf("available gauge %v, want 0", v)
	}
	w.cut.Store(false)
	if _, err := w.Admit(context.Background(), "fc", Limits{RequestsPerMinute: 10}, 0); err != nil {
		t.Fatalf("after reconnect: %v", err)
	}
}

func TestFailOpenCountsLocallyThenReconciles(t *testing.T) {
	c := newCluster(t, 0)
	w := c.worker("w1", func(o *Options) { o.FailPolicy = FailOpen })
	w.cut.Store(true)
	lim := Limits{RequestsPerMinute: 5}
	for i := range 5 {
		if _, err := w.Admit(context.Background(), "fo", lim, 0); err != nil {
			t.Fatalf("fail_open admit %d: %v", i, err)
		}
	}
	var d *Denied
	if _, err := w.Admit(context.Background(), "fo", lim, 0); !errors.As(err, &d) {
		t.Fatalf("6th admit while cut off: %v, want a local denial", err)
	}
	if got := testutil.ToFloat64(w.metrics.failOpen); got != 5 {
		t.Fatalf("fail-open admissions %v, want 5", got)
	}
	w.cut.Store(false)
	waitfor.Within(t, 10*time.Second, "debt reconciled", func() bool { return c.counter(minuteKey("fo", c.now())) == 5 })
}

func TestLeasesKeepKVOpsLowFarFromTheLimit(t *testing.T) {
	c := newCluster(t, 0)
	w := c.worker("w1", nil)
	lim := Limits{RequestsPerMinute: 1 << 30, TokensPerHour: 1 << 40, MaxConcurrentRequests: 1 << 20}
	const n = 5000
	for range n {
		tk, err := w.Admit(context.Background(), "far", lim, 200)
		if err != nil {
			t.Fatal(err)
		}
		tk.Finish(150)
	}
	ops := 0.0
	for _, op := range []string{"read", "cas", "cas_conflict"} {
		ops += testutil.ToFloat64(w.metrics.kv.ops.WithLabelValues(op, "ok"))
	}
	perReq := ops / n
	t.Logf("%.0f KV operations for %d admissions: %.4f per admitted request", ops, n, perReq)
	if perReq > 0.05 {
		t.Fatalf("%.4f KV operations per admitted request, want <= 0.05", perReq)
	}
}

func TestLoweredLimitDropsTheOldLease(t *testing.T) {
	c := newCluster(t, 0)
	w := c.worker("w1", nil)
	for range 20 { // builds a lease larger than one
		if _, err := w.Admit(context.Background(), "low", Limits{RequestsPerMinute: 10000}, 0); err != nil {
			t.Fatal(err)
		}
	}
	var d *Denied
	if _, err := w.Admit(context.Background(), "low", Limits{RequestsPerMinute: 5}, 0); !errors.As(err, &d) {
		t.Fatalf("after lowering the limit below use: %v, want a denial", err)
	}
}

func TestWindowRollsOver(t *testing.T) {
	c := newCluster(t, 0)
	var clock atomic.Int64
	clock.Store(time.Date(2026, 1, 1, 10, 0, 30, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	w := c.worker("w1", func(o *Options) { o.Now = now })
	lim := Limits{RequestsPerMinute: 2}
	for range 2 {
		if _, err := w.Admit(context.Background(), "roll", lim, 0); err != nil {
			t.Fatal(err)
		}
	}
	_, err := w.Admit(context.Background(), "roll", lim, 0)
	var d *Denied
	if !errors.As(err, &d) || d.RetryAfter != 30*time.Second {
		t.Fatalf("third: %v, want a denial with Retry-After 30s", err)
	}
	if d.Status.Requests.Remaining != 0 || d.Status.Requests.Limit != 2 {
		t.Fatalf("status %+v", d.Status.Requests)
	}
	clock.Add(int64(31 * time.Second))
	tk, err := w.Admit(context.Background(), "roll", lim, 0)
	if err != nil {
		t.Fatalf("next minute: %v", err)
	}
	if r := tk.Status.Requests; r.Remaining != 1 || r.Reset != 59*time.Second {
		t.Fatalf("status %+v, want 1 remaining, reset in 59s", r)
	}
}

func TestFormatReset(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{{0, "0s"}, {20 * time.Millisecond, "20ms"}, {time.Second, "1s"}, {6 * time.Minute, "6m0s"}, {1499 * time.Millisecond, "1s"}} {
		if got := FormatReset(tc.d); got != tc.want {
			t.Errorf("FormatReset(%s) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

// A worker cut off from NATS for longer than the heartbeat TTL loses its slots to
// the others; when it is back, it re-registers the requests it still has in flight,
// so that the key counts them again and nobody admits into them.
func TestPartitionedWorkerReRegistersItsSlots(t *testing.T) {
	c := newCluster(t, 3*time.Second)
	a, b := c.worker("a", nil), c.worker("b", nil)
	lim := Limits{MaxConcurrentRequests: 3}
	var held []*Ticket
	for range 2 {
		tk, err := a.Admit(context.Background(), "part", lim, 0)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, tk)
	}
	a.cut.Store(true)
	// b can use the one free slot at once, and a's two once its heartbeat expires.
	waitfor.Within(t, 10*time.Second, "b to hold all 3 slots", func() bool {
		tk, err := b.Admit(context.Background(), "part", lim, 0)
		if err == nil {
			held = append(held, tk)
		}
		return len(held) == 5
	})
	a.cut.Store(false)
	// a's 2 requests are still running: a must not admit more, and once it has
	// re-registered them, neither may b.
	if _, err := a.Admit(context.Background(), "part", lim, 0); !isDenied(err, KindConcurrency) {
		t.Fatalf("a after the partition: %v, want a concurrency denial", err)
	}
	held[2].Finish(0) // one of b's: b gives the slot back at once, the key being over its limit
	waitfor.Within(t, 5*time.Second, "b to refuse with a's 2 and its own 2 in flight (limit 3)", func() bool {
		tk, err := b.Admit(context.Background(), "part", lim, 0)
		if err == nil {
			tk.Finish(0)
			return false
		}
		return isDenied(err, KindConcurrency)
	})
	for _, tk := range held {
		tk.Finish(0)
	}
	waitfor.Within(t, 10*time.Second, "every slot free again", func() bool {
		tk, err := b.Admit(context.Background(), "part", lim, 0)
		if err != nil {
			return false
		}
		defer tk.Finish(0)
		return true
	})
}

func isDenied(err error, kind string) bool {
	var d *Denied
	return errors.As(err, &d) && d.Kind == kind
}

func TestCounterKeysExpireOnTheirOwn(t *testing.T) {
	c := newCluster(t, 0)
	w := c.worker("w1", nil)
	now := c.now()
	tk, err := w.Admit(context.Background(), "ttl", Limits{RequestsPerMinute: 10, TokensPerHour: 1000, MaxConcurrentRequests: 2}, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer tk.Finish(10)
	st, err := c.js.Stream(context.Background(), natsnames.KVStream(natsnames.LimitsBucket))
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{
		minuteKey("ttl", now): "2m0s",
		hourKey("ttl", now):   "2h0m0s",
		"conc.ttl":            "24h0m0s",
	} {
		msg, err := st.GetLastMsgForSubject(context.Background(), natsnames.KVSubject(natsnames.LimitsBucket, key))
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		if got := msg.Header.Get(jetstream.MsgTTLHeader); got != want {
			t.Errorf("%s: TTL %q, want %q", key, got, want)
		}
	}
}

func TestRefusalsAtTheLimitDoNotReadTheCounterEachTime(t *testing.T) {
	c := newCluster(t, 0)
	w := c.worker("w1", nil)
	lim := Limits{RequestsPerMinute: 3}
	for range 3 {
		if _, err := w.Admit(context.Background(), "hammer", lim, 0); err != nil {
			t.Fatal(err)
		}
	}
	ops := func() float64 {
		n := 0.0
		for _, op := range []string{"read", "cas", "cas_conflict"} {
			n += testutil.ToFloat64(w.metrics.kv.ops.WithLabelValues(op, "ok"))
		}
		return n
	}
	before := ops()
	for range 200 {
		if _, err := w.Admit(context.Background(), "hammer", lim, 0); !isDenied(err, KindRequests) {
			t.Fatalf("over the limit: %v", err)
		}
	}
	// One look at the counter per recheckAfter at most, not one per refusal.
	if got := ops() - before; got > 20 {
		t.Fatalf("%v KV operations for 200 refusals", got)
	}
}
