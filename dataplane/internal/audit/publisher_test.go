package audit

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/portcullis-gw/portcullis/shared/audit"
	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

func TestPublishDeliversInOrderAndEmptiesTheSpool(t *testing.T) {
	e := newNATS(t)
	var sink bytes.Buffer
	p := newPub(t, e, Options{Sink: &sink})
	p.run()

	const n = 600
	publishRange(t, p, 0, n)
	waitfor.That(t, "the spool to empty", func() bool { return p.metric(t, "portcullis_audit_spool_events") == 0 })
	wantIDs(t, e.streamIDs(t), 0, n, true)

	if got := p.metric(t, "portcullis_audit_published_total"); got != n {
		t.Errorf("published_total = %v, want %d", got, n)
	}
	if got := p.metric(t, "portcullis_audit_spool_oldest_age_seconds"); got != 0 {
		t.Errorf("oldest age of an empty spool = %v, want 0", got)
	}
	// The sink has each event as audit.Encode's bytes and a newline, with the
	// publisher's region and worker filled in.
	lines := strings.SplitAfter(sink.String(), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) != n {
		t.Fatalf("sink has %d lines, want %d", len(lines), n)
	}
	for i, line := range lines {
		ev := event(i)
		ev.Region, ev.Worker = testRegion, "eu-1"
		want, err := audit.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		if line != string(want)+"\n" {
			t.Fatalf("sink line %d:\n got %s\nwant %s", i, line, want)
		}
	}
}

func TestConcurrentPublishersShareFsyncs(t *testing.T) {
	e := newNATS(t)
	p := newPub(t, e, Options{})
	p.run()

	const writers, each = 16, 100
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := w * each; i < (w+1)*each; i++ {
				if err := p.Publish(event(i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	waitfor.That(t, "the spool to empty", func() bool { return p.metric(t, "portcullis_audit_spool_events") == 0 })
	wantIDs(t, e.streamIDs(t), 0, writers*each, false)
}

func TestOutageLosesNothing(t *testing.T) {
	e := newNATS(t)
	p := newPub(t, e, Options{SpoolMaxBytes: 1 << 20})
	p.run()

	publishRange(t, p, 0, 100)
	waitfor.That(t, "the first events to be published", func() bool { return p.metric(t, "portcullis_audit_spool_events") == 0 })

	e.stop()
	// Publish goes on succeeding while NATS is down; the spool grows.
	publishRange(t, p, 100, 400)
	if got := p.metric(t, "portcullis_audit_spool_events"); got != 300 {
		t.Errorf("spool depth during the outage = %v, want 300", got)
	}
	if got := p.metric(t, "portcullis_audit_spool_bytes"); got <= 0 {
		t.Errorf("spool bytes during the outage = %v, want > 0", got)
	}
	waitfor.That(t, "the oldest spooled event to age", func() bool {
		return p.metric(t, "portcullis_audit_spool_oldest_age_seconds") > 0.05
	})

	e.restart(t)
	publishRange(t, p, 400, 500)
	waitfor.That(t, "the spool to empty", func() bool { return p.metric(t, "portcullis_audit_spool_events") == 0 })
	wantIDs(t, e.streamIDs(t), 0, 500, false)
	if got := p.metric(t, "portcullis_audit_spool_oldest_age_seconds"); got != 0 {
		t.Errorf("oldest age after the replay = %v, want 0", got)
	}
	waitfor.That(t, "the acknowledged segments to be deleted", func() bool {
		return p.metric(t, "portcullis_audit_spool_bytes") <= float64(2*p.spool.segMax)
	})
}

// TestPublishAllKeepsWhatFits: near a full spool under reject_requests, a
// PublishAll of more events than there is room for keeps the ones that fit, as
// one Publish each would, and refuses the rest with ErrSpoolFull.
func TestPublishAllKeepsWhatFits(t *testing.T) {
	e := newNATS(t)
	// No relay: nothing leaves the spool, and 400 events are far more than 64 KiB holds.
	p := newPub(t, e, Options{SpoolMaxBytes: MinSpoolMaxBytes})
	const n = 400
	events := make([]audit.Event, n)
	for i := range events {
		events[i] = event(i)
	}
	var refused []string
	p.PublishAll(events, func(e audit.Event, err error) {
		if !errors.Is(err, ErrSpoolFull) {
			t.Errorf("event %s refused with %v, want ErrSpoolFull", e.RequestID, err)
		}
		refused = append(refused, e.RequestID)
	})
	kept := n - len(refused)
	if kept == 0 || len(refused) == 0 {
		t.Fatalf("kept %d and refused %d of %d events, want some of each", kept, len(refused), n)
	}
	if got := int(p.metric(t, "portcullis_audit_spool_events")); got != kept {
		t.Errorf("spool depth = %d, want the %d events kept", got, kept)
	}
	if refused[0] != requestID(kept) || refused[len(refused)-1] != requestID(n-1) {
		t.Errorf("refused %s..%s, want the last %d events (%s..%s)", refused[0], refused[len(refused)-1],
			len(refused), requestID(kept), requestID(n-1))
	}
}

func TestFullSpool(t *testing.T) {
	tests := []struct {
		name   string
		policy string
	}{
		{"reject_requests refuses new events", RejectRequests},
		{"drop_oldest deletes the oldest events", DropOldest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newNATS(t)
			// No relay yet: nothing leaves the spool.
			p := newPub(t, e, Options{SpoolMaxBytes: MinSpoolMaxBytes, FullPolicy: tc.policy})
			const n = 400
			accepted := 0
			for i := range n {
				err := p.Publish(event(i))
				if tc.policy == RejectRequests && errors.Is(err, ErrSpoolFull) {
					break
				}
				if err != nil {
					t.Fatalf("publish event %d: %v", i, err)
				}
				accepted++
			}
			if got := p.metric(t, "portcullis_audit_spool_bytes"); got > MinSpoolMaxBytes {
				t.Errorf("spool bytes = %v, above the bound %d", got, MinSpoolMaxBytes)
			}
			dropped := int(p.metric(t, "portcullis_audit_dropped_total"))
			switch tc.policy {
			case RejectRequests:
				if accepted == 0 || accepted == n {
					t.Fatalf("accepted %d of %d events before the spool was full", accepted, n)
				}
				if got := p.metric(t, "portcullis_audit_rejected_total"); got != 1 {
					t.Errorf("rejected_total = %v, want 1", got)
				}
				if err := p.Accepting(); !errors.Is(err, ErrSpoolFull) {
					t.Errorf("Accepting() = %v, want ErrSpoolFull", err)
				}
				if dropped != 0 {
					t.Errorf("dropped_total = %d, want 0", dropped)
				}
			case DropOldest:
				if accepted != n || dropped == 0 || dropped >= n {
					t.Fatalf("accepted %d, dropped %d of %d events", accepted, dropped, n)
				}
				if err := p.Accepting(); err != nil {
					t.Errorf("Accepting() = %v, want nil under drop_oldest", err)
				}
			}
			if got := int(p.metric(t, "portcullis_audit_spool_events")); got != accepted-dropped {
				t.Errorf("spool depth = %d, want %d accepted - %d dropped", got, accepted, dropped)
			}

			p.run()
			waitfor.That(t, "the spool to empty", func() bool { return p.metric(t, "portcullis_audit_spool_events") == 0 })
			// What is delivered is exactly what was accepted and not dropped: the
			// oldest events are the dropped ones.
			wantIDs(t, e.streamIDs(t), dropped, accepted, true)
			if err := p.Accepting(); err != nil {
				t.Errorf("Accepting() after the spool emptied = %v", err)
			}
			if err := p.Publish(event(n)); err != nil {
				t.Errorf("publish after the spool emptied: %v", err)
			}
		})
	}
}

func TestRestartReplaysTheSpool(t *testing.T) {
	tests := []struct {
		name string
		// tail is appended to the last segment after the first publisher closes, as
		// a crash mid-write would leave it.
		tail []byte
	}{
		{"clean", nil},
		{"torn record header", []byte{0, 0, 1}},
		{"torn record body", appendRecord(nil, 1, "audit.eu.x", "req-torn", []byte(`{"v":1}`))[:20]},
		{"zeros", make([]byte, 4096)},
		{"garbage", []byte("not a record at all, just some bytes")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newNATS(t)
			dir := t.TempDir()
			a := newPub(t, e, Options{SpoolDir: dir})
			a.run()
			publishRange(t, a, 0, 30)
			waitfor.That(t, "the first events to be published", func() bool { return a.metric(t, "portcullis_audit_spool_events") == 0 })
			a.stopRelay(t)
			// NATS goes away, so these stay in the spool, and Close cannot drain them.
			e.stop()
			publishRange(t, a, 30, 50)
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			if err := a.Publish(event(99)); !errors.Is(err, ErrClosed) {
				t.Fatalf("publish after close = %v, want ErrClosed", err)
			}
			if tc.tail != nil {
				appendToLastSegment(t, dir, tc.tail)
			}

			e.restart(t)
			b := newPub(t, e, Options{SpoolDir: dir})
			if got := b.metric(t, "portcullis_audit_spool_events"); got != 20 {
				t.Fatalf("a restarted publisher finds %v events to replay, want 20", got)
			}
			b.run()
			publishRange(t, b, 50, 60)
			waitfor.That(t, "the spool to empty", func() bool { return b.metric(t, "portcullis_audit_spool_events") == 0 })
			wantIDs(t, e.streamIDs(t), 0, 60, true)
			// The cursor saved by the first publisher spares the 30 it had
			// delivered from being sent again.
			if got := b.metric(t, "portcullis_audit_published_total"); got != 30 {
				t.Errorf("the restarted publisher published %v events, want 30", got)
			}
		})
	}
}

func TestADamagedLastRecordIsDroppedAtOpen(t *testing.T) {
	e := newNATS(t)
	dir := t.TempDir()
	a := newPub(t, e, Options{SpoolDir: dir})
	e.stop()
	publishRange(t, a, 0, 10)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	// Flip a byte of the last record's event: its checksum no longer matches. (Only
	// a disk that damages fsync'd data does this.)
	path := lastSegment(t, dir)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-2] ^= 0xff
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}

	e.restart(t)
	p := newPub(t, e, Options{SpoolDir: dir})
	p.run()
	waitfor.That(t, "the spool to empty", func() bool { return p.metric(t, "portcullis_audit_spool_events") == 0 })
	wantIDs(t, e.streamIDs(t), 0, 9, true)
}

func TestSpoolDirectoryIsExclusive(t *testing.T) {
	e := newNATS(t)
	dir := t.TempDir()
	newPub(t, e, Options{SpoolDir: dir})
	_, err := New(Options{JetStream: e.js, Region: testRegion, Worker: "eu-1", SpoolDir: dir})
	if err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("second publisher on one spool: err = %v, want in use", err)
	}
}

func TestPublishChecksTheEvent(t *testing.T) {
	e := newNATS(t)
	p := newPub(t, e, Options{})
	tests := []struct {
		name  string
		event audit.Event
		want  string
	}{
		{"no request id", audit.Event{Region: testRegion}, "without a request id"},
		{"another region", audit.Event{RequestID: "r", Region: "us"}, `region "us"`},
		{"request id too long", audit.Event{RequestID: strings.Repeat("x", maxRequestIDLen+1)}, "longer than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := p.Publish(tc.event)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Publish = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	big := event(1)
	big.Headers["x-big"] = strings.Repeat("x", maxRecordLen)
	if err := p.Publish(big); !errors.Is(err, ErrEventTooLarge) {
		t.Errorf("Publish of a huge event = %v, want ErrEventTooLarge", err)
	}
	if got := p.metric(t, "portcullis_audit_spool_events"); got != 0 {
		t.Errorf("refused events reached the spool: depth %v", got)
	}
}

func TestNewValidatesOptions(t *testing.T) {
	e := newNATS(t)
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"no jetstream", Options{Region: "eu", Worker: "w", SpoolDir: t.TempDir()}, "no JetStream"},
		{"no region", Options{JetStream: e.js, Worker: "w", SpoolDir: t.TempDir()}, "no region"},
		{"no worker", Options{JetStream: e.js, Region: "eu", SpoolDir: t.TempDir()}, "no worker"},
		{"no spool dir", Options{JetStream: e.js, Region: "eu", Worker: "w"}, "no spool directory"},
		{"tiny spool", Options{JetStream: e.js, Region: "eu", Worker: "w", SpoolDir: t.TempDir(), SpoolMaxBytes: 1000}, "below the minimum"},
		{"bad policy", Options{JetStream: e.js, Region: "eu", Worker: "w", SpoolDir: t.TempDir(), FullPolicy: "block"}, `full policy "block"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(tc.o)
			if err == nil {
				p.Close()
				t.Fatal("New accepted bad options")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestRunAndCloseLifecycle(t *testing.T) {
	e := newNATS(t)
	p := newPub(t, e, Options{})
	p.run()
	waitfor.That(t, "the relay to start", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.running
	})
	if err := p.Run(t.Context()); err == nil {
		t.Fatal("a second Run was accepted")
	}
	publishRange(t, p, 0, 5)
	// Close stops the relay by itself and delivers what is spooled.
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-p.done; err != nil {
		t.Fatalf("Run after Close = %v, want nil", err)
	}
	p.cancel()
	p.cancel = nil
	if err := p.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if err := p.Run(t.Context()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close = %v, want ErrClosed", err)
	}
	wantIDs(t, e.streamIDs(t), 0, 5, true)
}

func lastSegment(t *testing.T, dir string) string {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "*"+segmentSuffix))
	if err != nil || len(segs) == 0 {
		t.Fatalf("no segment in %s: %v", dir, err)
	}
	return segs[len(segs)-1]
}

func appendToLastSegment(t *testing.T, dir string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(lastSegment(t, dir), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

func TestOutageMidStream(t *testing.T) {
	e := newNATS(t)
	p := newPub(t, e, Options{})
	p.run()

	// Writers publish without pause while NATS goes down and comes back.
	var next atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := p.Publish(event(int(next.Add(1) - 1))); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	waitfor.That(t, "events to flow", func() bool { return p.metric(t, "portcullis_audit_published_total") >= 200 })
	e.stop()
	waitfor.That(t, "the spool to grow during the outage", func() bool { return p.metric(t, "portcullis_audit_spool_events") >= 300 })
	e.restart(t)
	before := p.metric(t, "portcullis_audit_published_total")
	waitfor.That(t, "publishing to resume", func() bool { return p.metric(t, "portcullis_audit_published_total") >= before+300 })
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("publish: %v", err)
	}
	waitfor.That(t, "the spool to empty", func() bool { return p.metric(t, "portcullis_audit_spool_events") == 0 })
	wantIDs(t, e.streamIDs(t), 0, int(next.Load()), false)
}
