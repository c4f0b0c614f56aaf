package health

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/portcullis-gw/portcullis/shared/health"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/natstest"
	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

// TestMain fails the package if a test leaves a goroutine running.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is a settable clock, safe for concurrent use.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// fixture is a started collector on an embedded nats-server, with a connection to
// publish reports by hand.
type fixture struct {
	t     *testing.T
	clock *clock
	coll  *Collector
	pub   *nats.Conn
}

// newFixture starts a fixture; opts change the collector's options.
func newFixture(t *testing.T, opts ...func(*Options)) *fixture {
	t.Helper()
	srv := natstest.StartWith(t, natstest.Options{NoConn: true})
	connect := func() *nats.Conn {
		nc, _ := srv.Connect(t)
		return nc
	}
	f := &fixture{t: t, clock: &clock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}}
	o := Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: f.clock.Now}
	for _, opt := range opts {
		opt(&o)
	}
	f.coll = New(connect(), o)
	if err := f.coll.Subscribe(); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- f.coll.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-ran:
			if err != nil {
				t.Errorf("collector Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("collector Run did not return once its context ended")
		}
	})
	f.pub = connect()
	// The subscription is registered once the server has seen the collector's flush.
	if err := f.coll.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return f
}

// counted is the collector's count of reports with result.
func (f *fixture) counted(result string) int {
	return int(testutil.ToFloat64(f.coll.reports.WithLabelValues(result)))
}

// send publishes raw data on subject and waits until the collector has counted it.
func (f *fixture) send(subject string, data []byte, result string) {
	f.t.Helper()
	before := f.counted(result)
	if err := f.pub.Publish(subject, data); err != nil {
		f.t.Fatalf("publish: %v", err)
	}
	if err := f.pub.Flush(); err != nil {
		f.t.Fatal(err)
	}
	waitfor.That(f.t, "report counted as "+result, func() bool { return f.counted(result) > before })
}

// report publishes r as worker r.Worker would and waits until it is taken in.
func (f *fixture) report(r health.Report) {
	f.t.Helper()
	data, err := health.Encode(r)
	if err != nil {
		f.t.Fatal(err)
	}
	f.send(natsnames.HealthSubject(r.Region, r.Worker), data, "ok")
}

func report(worker, region string, policy int64, deps ...health.Deployment) health.Report {
	return health.Report{Worker: worker, Region: region, At: time.Now().UTC(), PolicyVersion: policy, Deployments: deps}
}

func TestCollectorTwoWorkersDisagree(t *testing.T) {
	f := newFixture(t)
	f.report(report("w2", "eu", 7,
		health.Deployment{Name: "openai-eu", Breaker: "closed", ErrorRate: 0.1, Samples: 10},
		health.Deployment{Name: "azure-eu", Breaker: "half-open", ErrorRate: 0.5, Samples: 4}))
	arrivedW2 := f.clock.Now()
	f.clock.advance(time.Second)
	f.report(report("w1", "eu", 8,
		health.Deployment{Name: "openai-eu", Breaker: "open", ErrorRate: 0.9, Samples: 20, LatencyMS: 812.5}))

	got := f.coll.Fleet(f.clock.Now())
	if got.Workers != 2 {
		t.Errorf("Workers = %d, want 2", got.Workers)
	}
	if len(got.Deployments) != 2 || got.Deployments[0].Deployment != "azure-eu" || got.Deployments[1].Deployment != "openai-eu" {
		t.Fatalf("deployments = %+v, want azure-eu then openai-eu", got.Deployments)
	}
	azure, openai := got.Deployments[0], got.Deployments[1]
	if azure.State != StateHalfOpen || len(azure.Workers) != 1 {
		t.Errorf("azure-eu = %+v, want half-open from one worker", azure)
	}
	if openai.State != StateOpen {
		t.Errorf("openai-eu state = %q, want open (w1 has it open, w2 closed)", openai.State)
	}
	want := []WorkerHealth{
		{Worker: "w1", Region: "eu", Breaker: "open", ErrorRate: 0.9, Samples: 20, LatencyMS: 812.5, ReportedAt: arrivedW2.Add(time.Second), PolicyVersion: 8},
		{Worker: "w2", Region: "eu", Breaker: "closed", ErrorRate: 0.1, Samples: 10, ReportedAt: arrivedW2, PolicyVersion: 7},
	}
	if len(openai.Workers) != len(want) {
		t.Fatalf("openai-eu workers = %+v, want %+v", openai.Workers, want)
	}
	for i := range want {
		if !openai.Workers[i].ReportedAt.Equal(want[i].ReportedAt) {
			t.Errorf("worker %d reported_at = %v, want %v", i, openai.Workers[i].ReportedAt, want[i].ReportedAt)
		}
		openai.Workers[i].ReportedAt = want[i].ReportedAt
		if openai.Workers[i] != want[i] {
			t.Errorf("worker %d = %+v, want %+v", i, openai.Workers[i], want[i])
		}
	}
}

func TestCollectorLatestReportWins(t *testing.T) {
	f := newFixture(t)
	f.report(report("w1", "eu", 1, health.Deployment{Name: "openai-eu", Breaker: "open"}))
	f.clock.advance(health.Interval)
	f.report(report("w1", "eu", 2, health.Deployment{Name: "openai-eu", Breaker: "closed"}))
	got := f.coll.Snapshot(f.clock.Now())
	if len(got) != 1 || got[0].State != StateClosed || len(got[0].Workers) != 1 || got[0].Workers[0].PolicyVersion != 2 {
		t.Fatalf("Snapshot = %+v, want only w1's second report", got)
	}
}

func TestCollectorForgetsStaleReports(t *testing.T) {
	tests := []struct {
		name        string
		age         time.Duration
		wantWorkers int
	}{
		{"fresh", health.Interval, 1},
		{"at the limit", StaleAfter, 1},
		{"stale", StaleAfter + time.Millisecond, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.report(report("w1", "eu", 1, health.Deployment{Name: "openai-eu", Breaker: "closed"}))
			f.clock.advance(tc.age)
			got := f.coll.Current()
			if got.Workers != tc.wantWorkers || len(got.Deployments) != tc.wantWorkers {
				t.Fatalf("after %v: %+v, want %d workers", tc.age, got, tc.wantWorkers)
			}
			// A stale report is forgotten, not just hidden: going back in time does
			// not bring it back.
			f.coll.mu.Lock()
			kept := len(f.coll.latest)
			f.coll.mu.Unlock()
			if kept != tc.wantWorkers {
				t.Errorf("kept %d reports, want %d", kept, tc.wantWorkers)
			}
		})
	}
}

func TestCollectorRejectsBadReports(t *testing.T) {
	tests := []struct {
		name string
		data string
	}{
		{"not json", `{nope`},
		{"unknown schema version", `{"version":2,"worker":"w9","region":"eu","deployments":[{"name":"openai-eu","breaker":"open"}]}`},
		{"no version", `{"worker":"w9","region":"eu","deployments":[{"name":"openai-eu","breaker":"open"}]}`},
		{"no worker", `{"version":1,"region":"eu","deployments":[{"name":"openai-eu","breaker":"open"}]}`},
	}
	f := newFixture(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.send(natsnames.HealthSubject("eu", "w9"), []byte(tc.data), "rejected")
			if got := f.coll.Current(); got.Workers != 0 || len(got.Deployments) != 0 {
				t.Fatalf("a rejected report was kept: %+v", got)
			}
		})
	}
	// The collector is still taking reports in.
	f.report(report("w1", "eu", 1, health.Deployment{Name: "openai-eu", Breaker: "closed"}))
	if got := f.coll.Current(); got.Workers != 1 {
		t.Fatalf("after bad reports, a good one was not kept: %+v", got)
	}
	if ok, rejected := f.counted("ok"), f.counted("rejected"); ok != 1 || rejected != len(tests) {
		t.Errorf("counted ok=%d rejected=%d, want 1 and %d", ok, rejected, len(tests))
	}
}

func TestSummarize(t *testing.T) {
	tests := []struct {
		name     string
		breakers []string
		want     string
	}{
		{"all closed", []string{"closed", "closed"}, StateClosed},
		{"one open wins", []string{"closed", "half-open", "open"}, StateOpen},
		{"half-open over closed", []string{"closed", "half-open"}, StateHalfOpen},
		{"every worker unusable", []string{"unusable", "unusable"}, StateUnusable},
		{"some unusable", []string{"unusable", "closed"}, StateClosed},
		{"unusable and half-open", []string{"unusable", "half-open"}, StateHalfOpen},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var ws []WorkerHealth
			for _, b := range tc.breakers {
				ws = append(ws, WorkerHealth{Breaker: b})
			}
			if got := summarize(ws); got != tc.want {
				t.Errorf("summarize(%v) = %q, want %q", tc.breakers, got, tc.want)
			}
		})
	}
}

func TestCollectorLifecycle(t *testing.T) {
	f := newFixture(t)
	if err := f.coll.Subscribe(); err != nil {
		t.Errorf("a second Subscribe failed: %v", err)
	}
	// Bounded, so that were this Run the first one it would end, not hang the test.
	second, cancelSecond := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancelSecond()
	if err := f.coll.Run(second); err == nil {
		t.Error("a second Run succeeded")
	}

	// Run subscribes by itself, and unsubscribes when its context ends.
	c := New(f.pub, Options{Log: f.coll.log})
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- c.Run(ctx) }()
	waitfor.That(t, "Run to subscribe", func() bool {
		c.lifeMu.Lock()
		defer c.lifeMu.Unlock()
		return c.sub != nil
	})
	cancel()
	if err := <-ran; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if c.sub.IsValid() {
		t.Error("still subscribed after Run returned")
	}
	if err := c.Subscribe(); err == nil {
		t.Error("Subscribe after Run ended succeeded")
	}
	if err := c.Run(context.Background()); err == nil {
		t.Error("Run after Run ended succeeded")
	}
}
