package auditarchive_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive"
	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive/export"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store/storetest"
	"github.com/portcullis-gw/portcullis/shared/audit"
	"github.com/portcullis-gw/portcullis/shared/logtest"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/natstest"
	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is a real Postgres store and an embedded nats-server.
type env struct {
	st   *store.Store
	js   jetstream.JetStream
	logs *logtest.Buffer
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{logs: &logtest.Buffer{}}
	e.st, _ = storetest.Open(t)
	e.js = natstest.Start(t).JetStream
	return e
}

// stream creates region's audit stream as data planes do.
func (e *env) stream(t testing.TB, region string) {
	t.Helper()
	_, err := e.js.CreateStream(context.Background(), jetstream.StreamConfig{
		Name:       natsnames.AuditStream(region),
		Subjects:   []string{"audit." + region + ".>"},
		Storage:    jetstream.FileStorage,
		DenyDelete: true,
		DenyPurge:  true,
		Duplicates: 2 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
}

// publish publishes an event as a data plane does; msgID is the request id unless given.
func (e *env) publish(t testing.TB, ev audit.Event, msgID ...string) {
	t.Helper()
	b, err := audit.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	id := ev.RequestID
	if len(msgID) > 0 {
		id = msgID[0]
	}
	e.publishRaw(t, natsnames.AuditSubject(ev.Region, ev.ClientID), b, id)
}

func (e *env) publishRaw(t testing.TB, subject string, data []byte, msgID string) {
	t.Helper()
	if _, err := e.js.Publish(context.Background(), subject, data, jetstream.WithMsgID(msgID)); err != nil {
		t.Fatal(err)
	}
}

func event(region string, i int) audit.Event {
	return audit.Event{TS: time.Now().UTC(), RequestID: fmt.Sprintf("%s-req-%05d", region, i), Region: region,
		Worker: region + "-1", ClientID: fmt.Sprintf("client-%d", i%4), Operation: "chat", Model: "gpt-4o",
		Provider: "openai", Deployment: "openai-" + region, TokensIn: 100, TokensOut: 20, Status: 200,
		PromptHash: audit.HashPrefix + "00", Headers: map[string]string{"x-request-id": fmt.Sprintf("r%d", i)}}
}

// ingester runs an Ingester over st until the test ends, returning it and the
// registry holding its metrics.
func (e *env) ingester(t testing.TB, st auditarchive.Store) (*auditarchive.Ingester, *prometheus.Registry) {
	t.Helper()
	in := auditarchive.New(auditarchive.Options{JetStream: e.js, Store: st, Log: slog.New(slog.NewJSONHandler(e.logs, nil)),
		DiscoverInterval: 50 * time.Millisecond, FetchWait: 200 * time.Millisecond, RetryDelay: 100 * time.Millisecond})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(in.Collectors()...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("the ingester did not stop")
		}
	})
	return in, reg
}

// metric sums the samples of name whose labels include want.
func metric(t testing.TB, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue next
				}
			}
			if m.GetCounter() != nil {
				sum += m.GetCounter().GetValue()
			} else {
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

// exported exports region's whole archive, verifies it, and returns its events.
func exported(t testing.TB, st *store.Store, region, client string) ([]audit.Event, export.Summary) {
	t.Helper()
	q := store.AuditQuery{Region: region, From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Hour), ClientID: client}
	var buf bytes.Buffer
	w := export.NewWriter(&buf, export.CSV)
	var events []audit.Event
	head, err := st.ExportAudit(context.Background(), q, func(r store.AuditRow) error {
		e, err := audit.Decode(r.Event)
		if err != nil {
			return err
		}
		events = append(events, e)
		return w.Row(export.Row{Seq: r.Seq, PrevHash: r.PrevHash, ChainHash: r.ChainHash, Event: r.Event})
	})
	if err != nil {
		t.Fatal(err)
	}
	var c *string
	if client != "" {
		c = &client
	}
	if err := w.Finish(export.Head{Region: region, Seq: head.Seq, Hash: head.Hash, ExportedAt: head.At, From: q.From, To: q.To, Client: c}); err != nil {
		t.Fatal(err)
	}
	sum, err := export.Verify(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("export of %s does not verify: %v", region, err)
	}
	return events, sum
}

func TestIngestArchivesEachRegionApartAndEachRequestOnce(t *testing.T) {
	e := newEnv(t)
	e.stream(t, "eu")
	e.stream(t, "us")
	const nEU, nUS, dups = 300, 120, 25
	for i := range nEU {
		e.publish(t, event("eu", i))
	}
	for i := range nUS {
		e.publish(t, event("us", i))
	}
	// The same request again under another message id, which the stream's own
	// deduplication does not catch: a data plane replaying its spool, say.
	for i := range dups {
		e.publish(t, event("eu", i), fmt.Sprintf("replay-%d", i))
	}
	// Rejected: not an event, an event of us in eu's stream, an unknown schema version.
	e.publishRaw(t, natsnames.AuditSubject("eu", "x"), []byte("not json"), "bad-1")
	wrong, _ := audit.Encode(event("us", 10000))
	e.publishRaw(t, natsnames.AuditSubject("eu", "x"), wrong, "bad-2")
	e.publishRaw(t, natsnames.AuditSubject("eu", "x"), []byte(`{"v":99,"request_id":"r","region":"eu"}`), "bad-3")

	_, reg := e.ingester(t, e.st)
	eu := map[string]string{"region": "eu"}
	waitfor.That(t, "every event taken", func() bool {
		return metric(t, reg, "portcullis_controlplane_audit_events_total", nil) == nEU+nUS+dups+3
	})
	for _, c := range []struct {
		region, result string
		want           float64
	}{
		{"eu", "stored", nEU}, {"eu", "duplicate", dups}, {"eu", "rejected", 3},
		{"us", "stored", nUS}, {"us", "duplicate", 0}, {"us", "rejected", 0},
	} {
		if got := metric(t, reg, "portcullis_controlplane_audit_events_total", map[string]string{"region": c.region, "result": c.result}); got != c.want {
			t.Errorf("%s %s: %v, want %v", c.region, c.result, got, c.want)
		}
	}
	waitfor.That(t, "lag 0", func() bool { return metric(t, reg, "portcullis_controlplane_audit_lag", eu) == 0 })

	for _, c := range []struct {
		region string
		want   int
	}{{"eu", nEU}, {"us", nUS}} {
		events, sum := exported(t, e.st, c.region, "")
		if len(events) != c.want || sum.Head.Seq != int64(c.want) || !sum.ReachesHead {
			t.Fatalf("%s: %d events, head %d; want %d", c.region, len(events), sum.Head.Seq, c.want)
		}
		seen := map[string]bool{}
		for _, ev := range events {
			if ev.Region != c.region || seen[ev.RequestID] {
				t.Fatalf("%s's export holds %s of %s (seen before: %v)", c.region, ev.RequestID, ev.Region, seen[ev.RequestID])
			}
			seen[ev.RequestID] = true
		}
	}
	if events, _ := exported(t, e.st, "eu", "client-1"); len(events) != nEU/4 {
		t.Fatalf("client-1 has %d eu events, want %d", len(events), nEU/4)
	}
}

func TestReplayFromTheStartArchivesNothingTwice(t *testing.T) {
	e := newEnv(t)
	e.stream(t, "eu")
	const n = 150
	for i := range n {
		e.publish(t, event("eu", i))
	}
	func() {
		ctx, cancel := context.WithCancel(context.Background())
		in := auditarchive.New(auditarchive.Options{JetStream: e.js, Store: e.st, DiscoverInterval: 50 * time.Millisecond,
			FetchWait: 100 * time.Millisecond, Log: slog.New(slog.NewJSONHandler(io.Discard, nil))})
		done := make(chan struct{})
		go func() { defer close(done); _ = in.Run(ctx) }()
		defer func() { cancel(); <-done }()
		waitfor.That(t, "first pass", func() bool { ev, _ := exported(t, e.st, "eu", ""); return len(ev) == n })
	}()
	// A new consumer delivers the whole stream again.
	if err := e.js.DeleteConsumer(context.Background(), natsnames.AuditStream("eu"), auditarchive.ConsumerName(natsnames.AuditStream("eu"))); err != nil {
		t.Fatal(err)
	}
	for i := n; i < n+10; i++ {
		e.publish(t, event("eu", i))
	}
	_, reg := e.ingester(t, e.st)
	waitfor.That(t, "the replay", func() bool {
		return metric(t, reg, "portcullis_controlplane_audit_events_total", nil) == n+10
	})
	if d := metric(t, reg, "portcullis_controlplane_audit_events_total", map[string]string{"result": "duplicate"}); d != n {
		t.Fatalf("%v duplicates, want %d", d, n)
	}
	if events, sum := exported(t, e.st, "eu", ""); len(events) != n+10 || sum.Head.Seq != n+10 {
		t.Fatalf("%d events after the replay, want %d", len(events), n+10)
	}
}

func TestTwoReplicasShareTheWorkAndOneChain(t *testing.T) {
	e := newEnv(t)
	e.stream(t, "eu")
	_, reg1 := e.ingester(t, e.st)
	_, reg2 := e.ingester(t, e.st)
	const n = 600
	for i := range n {
		e.publish(t, event("eu", i))
	}
	stored := func() float64 {
		s := map[string]string{"result": "stored"}
		return metric(t, reg1, "portcullis_controlplane_audit_events_total", s) + metric(t, reg2, "portcullis_controlplane_audit_events_total", s)
	}
	waitfor.That(t, "every event stored", func() bool { return stored() == n })
	if events, sum := exported(t, e.st, "eu", ""); len(events) != n || sum.Head.Seq != n {
		t.Fatalf("%d events, head %d; want %d", len(events), sum.Head.Seq, n)
	}
}

// flakyStore fails its first calls, as a Postgres restart would.
type flakyStore struct {
	st    *store.Store
	fails atomic.Int32
}

func (f *flakyStore) AppendAudit(ctx context.Context, region string, events []store.AuditEvent) (store.AuditAppend, error) {
	if f.fails.Add(-1) >= 0 {
		return store.AuditAppend{}, fmt.Errorf("connection refused")
	}
	return f.st.AppendAudit(ctx, region, events)
}

func TestAFailedBatchIsRedelivered(t *testing.T) {
	e := newEnv(t)
	e.stream(t, "eu")
	f := &flakyStore{st: e.st}
	f.fails.Store(3)
	const n = 40
	for i := range n {
		e.publish(t, event("eu", i))
	}
	_, reg := e.ingester(t, f)
	waitfor.That(t, "every event stored", func() bool {
		return metric(t, reg, "portcullis_controlplane_audit_events_total", map[string]string{"result": "stored"}) == n
	})
	if got := metric(t, reg, "portcullis_controlplane_audit_archive_failures_total", nil); got != 3 {
		t.Fatalf("%v failures counted, want 3", got)
	}
	if events, _ := exported(t, e.st, "eu", ""); len(events) != n {
		t.Fatalf("%d events archived, want %d", len(events), n)
	}
}

func TestAStreamCreatedLaterIsFound(t *testing.T) {
	e := newEnv(t)
	_, reg := e.ingester(t, e.st)
	time.Sleep(100 * time.Millisecond) // let a discovery find nothing first
	e.stream(t, "ap-south")
	e.publish(t, event("ap-south", 1))
	waitfor.That(t, "the new region's event", func() bool {
		return metric(t, reg, "portcullis_controlplane_audit_events_total", map[string]string{"region": "ap-south", "result": "stored"}) == 1
	})
}

// TestAnUnsafeStreamIsReset: a data plane's identity may create its region's audit
// stream. One created with republishing (which would have the server publish an
// event on audit.eu.openai as keys.revoked.openai, a subject only the control plane
// may write) and an
// extra subject is reset by the control plane before it archives: the republish
// and the subject are gone, the reset is logged, the events are archived, and none
// reaches keys.revoked.openai.
func TestAnUnsafeStreamIsReset(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, err := e.js.CreateStream(ctx, jetstream.StreamConfig{
		Name:      natsnames.AuditStream("eu"),
		Subjects:  []string{"audit.eu.>", "elsewhere.>"},
		Storage:   jetstream.FileStorage,
		RePublish: &jetstream.RePublish{Source: "audit.eu.*", Destination: "keys.revoked.{{wildcard(1)}}"},
		// Rollups, deletes and purges would remove events before they are archived.
		AllowRollup: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	_, reg := e.ingester(t, e.st)
	waitfor.That(t, "the audit stream reset", func() bool {
		st, err := e.js.Stream(ctx, natsnames.AuditStream("eu"))
		if err != nil {
			t.Fatal(err)
		}
		cfg := st.CachedInfo().Config
		return cfg.RePublish == nil && len(cfg.Subjects) == 1 && cfg.Subjects[0] == "audit.eu.>" &&
			!cfg.AllowRollup && cfg.DenyDelete && cfg.DenyPurge
	})
	if !strings.Contains(e.logs.String(), `"reset":["republish","allow_rollup","deny_delete_and_purge","subjects"]`) {
		t.Fatalf("the reset is not logged:\n%s", e.logs.String())
	}
	nc := e.js.Conn()
	revoked, err := nc.SubscribeSync(natsnames.KeysRevokedSubject("openai"))
	if err != nil {
		t.Fatal(err)
	}
	defer revoked.Unsubscribe()
	ev := event("eu", 1)
	ev.ClientID = "openai"
	e.publish(t, ev)
	waitfor.That(t, "the event archived", func() bool {
		return metric(t, reg, "portcullis_controlplane_audit_events_total", map[string]string{"region": "eu", "result": "stored"}) == 1
	})
	if msg, err := revoked.NextMsg(100 * time.Millisecond); err == nil {
		t.Fatalf("an audit event was republished on %s: %s", msg.Subject, msg.Data)
	}
}

// BenchmarkIngest measures archiving throughput: b.N events are published to one
// region's stream first, then timed from the ingester's start until all are stored.
func BenchmarkIngest(b *testing.B) {
	e := newEnv(b)
	e.stream(b, "eu")
	n := max(b.N, 1000)
	for i := range n {
		data, _ := audit.Encode(event("eu", i))
		if _, err := e.js.PublishAsync(natsnames.AuditSubject("eu", "c"), data, jetstream.WithMsgID(fmt.Sprint(i))); err != nil {
			b.Fatal(err)
		}
		if i%1000 == 999 {
			<-e.js.PublishAsyncComplete()
		}
	}
	<-e.js.PublishAsyncComplete()
	b.ResetTimer()
	start := time.Now()
	_, reg := e.ingester(b, e.st)
	waitfor.That(b, "every event stored", func() bool {
		return metric(b, reg, "portcullis_controlplane_audit_events_total", map[string]string{"result": "stored"}) == float64(n)
	})
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "events/s")
}
