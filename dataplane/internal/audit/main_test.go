package audit

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/portcullis-gw/portcullis/shared/audit"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/natstest"
	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testRegion = "eu"

// natsEnv is an embedded nats-server with the audit stream of testRegion, and a
// connection to it that reconnects quickly.
type natsEnv struct {
	ns *natstest.Server
	nc *nats.Conn
	js jetstream.JetStream
}

func newNATS(t testing.TB) *natsEnv {
	t.Helper()
	e := &natsEnv{ns: natstest.StartWith(t, natstest.Options{NoConn: true})}
	e.nc, e.js = e.ns.Connect(t, nats.ReconnectJitter(0, 0))
	// The control plane's side: it creates the audit streams data planes ask for.
	cpConn, cpJS := e.ns.Connect(t)
	if _, err := audit.ServeStreamCreate(cpConn, cpJS, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := EnsureStream(ctx, e.js, StreamOptions{Region: testRegion}); err != nil {
		t.Fatal(err)
	}
	return e
}

// stop shuts the server down; restart starts a new one on the same port and store.
func (e *natsEnv) stop() { e.ns.Stop() }

func (e *natsEnv) restart(t testing.TB) {
	t.Helper()
	e.ns.Restart()
	waitfor.That(t, "the client to reconnect", e.nc.IsConnected)
}

// streamIDs returns the request ids in the region's stream, in stream order,
// checking each message's subject and Nats-Msg-Id against its event.
func (e *natsEnv) streamIDs(t testing.TB) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := e.js.Stream(ctx, natsnames.AuditStream(testRegion))
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("get message %d: %v", seq, err)
		}
		ev, err := audit.Decode(m.Data)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		if got := m.Header.Get(jetstream.MsgIDHeader); got != ev.RequestID {
			t.Fatalf("message %d: Nats-Msg-Id %q, request id %q", seq, got, ev.RequestID)
		}
		if want := natsnames.AuditSubject(testRegion, ev.ClientID); m.Subject != want {
			t.Fatalf("message %d: subject %q, want %q", seq, m.Subject, want)
		}
		ids = append(ids, ev.RequestID)
	}
	return ids
}

// testPub is a publisher with its own registry.
type testPub struct {
	*Publisher
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

// newPub opens a publisher on e; o's zero fields get test values.
func newPub(t testing.TB, e *natsEnv, o Options) *testPub {
	t.Helper()
	reg := prometheus.NewRegistry()
	o.JetStream, o.Region, o.Registerer = e.js, testRegion, reg
	if o.Worker == "" {
		o.Worker = "eu-1"
	}
	if o.SpoolDir == "" {
		o.SpoolDir = t.TempDir()
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.PublishTimeout == 0 {
		o.PublishTimeout = time.Second
	}
	p, err := New(o)
	if err != nil {
		t.Fatalf("new publisher: %v", err)
	}
	tp := &testPub{Publisher: p, reg: reg}
	t.Cleanup(func() {
		tp.stopRelay(t)
		if err := p.Close(); err != nil {
			t.Errorf("close publisher: %v", err)
		}
	})
	return tp
}

// run starts the relay.
func (tp *testPub) run() {
	ctx, cancel := context.WithCancel(context.Background())
	tp.cancel, tp.done = cancel, make(chan error, 1)
	go func() { tp.done <- tp.Run(ctx) }()
}

// stopRelay stops the relay, if running, and waits for it.
func (tp *testPub) stopRelay(t testing.TB) {
	t.Helper()
	if tp.cancel == nil {
		return
	}
	tp.cancel()
	if err := <-tp.done; err != nil {
		t.Errorf("relay: %v", err)
	}
	tp.cancel = nil
}

// metric is the value of the unlabelled series name in tp's registry.
func (tp *testPub) metric(t testing.TB, name string) float64 {
	t.Helper()
	return gather(t, tp.reg, name)
}

func gather(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// event is the i-th test event.
func event(i int) audit.Event {
	status, code := 200, (*string)(nil)
	if i%7 == 3 {
		c := "rate_limited"
		status, code = 429, &c
	}
	return audit.Event{
		TS:        time.Date(2026, 4, 14, 20, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond),
		RequestID: requestID(i), ClientID: fmt.Sprintf("client-%d", i%3), TenantID: "tenant-a",
		Operation: "chat", Model: "gpt-4o", Provider: "openai", Deployment: "openai-eu", KeyVersion: 7,
		PromptHash:   "hmac-sha256:0a4d55a8d778e5022fab701977c5d840bbc486d0a4d55a8d778e5022fab70197",
		ResponseHash: "hmac-sha256:77c5d840bbc486d0a4d55a8d778e5022fab701977c5d840bbc486d0a4d55a8d7",
		TokensIn:     1247, TokensOut: 342, CostUSDMicros: 9000, LatencyMS: 1840, UpstreamLatencyMS: 1822,
		Status: status, ErrorCode: code, Headers: map[string]string{"x-request-id": requestID(i)},
	}
}

func requestID(i int) string { return fmt.Sprintf("req-%06d", i) }

// publishRange publishes events [from, to) and fails the test on any error.
func publishRange(t testing.TB, p *testPub, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := p.Publish(event(i)); err != nil {
			t.Fatalf("publish event %d: %v", i, err)
		}
	}
}

// wantIDs checks that got holds exactly the ids of events [from, to), each once, in
// order if ordered.
func wantIDs(t testing.TB, got []string, from, to int, ordered bool) {
	t.Helper()
	seen := make(map[string]int, len(got))
	for _, id := range got {
		seen[id]++
	}
	for i := from; i < to; i++ {
		if n := seen[requestID(i)]; n != 1 {
			t.Errorf("event %s is in the stream %d times, want once", requestID(i), n)
		}
		delete(seen, requestID(i))
	}
	for id := range seen {
		t.Errorf("unexpected event %s in the stream", id)
	}
	if ordered && !t.Failed() {
		for i, id := range got {
			if id != requestID(from+i) {
				t.Fatalf("stream position %d holds %s, want %s", i, id, requestID(from+i))
			}
		}
	}
}
