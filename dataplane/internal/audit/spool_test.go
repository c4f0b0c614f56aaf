package audit

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// testSpool is a spool with its counters.
type testSpool struct {
	*spool
	dropped, rejected prometheus.Counter
}

func openTestSpool(t *testing.T, dir string, maxBytes int64, dropOldest bool) *testSpool {
	t.Helper()
	ts := &testSpool{
		dropped:  prometheus.NewCounter(prometheus.CounterOpts{Name: "dropped"}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{Name: "rejected"}),
	}
	s, err := openSpool(spoolOptions{dir: dir, maxBytes: maxBytes, dropOldest: dropOldest,
		log: slog.New(slog.DiscardHandler), dropped: ts.dropped, rejected: ts.rejected})
	if err != nil {
		t.Fatalf("open spool: %v", err)
	}
	ts.spool = s
	return ts
}

func (s *testSpool) shut(t *testing.T) {
	t.Helper()
	s.stopAppends()
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
}

func (s *testSpool) add(t *testing.T, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		id := requestID(i)
		rec := appendRecord(nil, int64(i+1), "audit.eu.c", id, []byte(`{"request_id":"`+id+`"}`))
		if err := s.append(rec, 1, int64(i+1)); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
}

// drainIDs reads and acknowledges everything in the spool, as a relay whose every
// publish succeeds would.
func (s *testSpool) drainIDs(t *testing.T) []string {
	t.Helper()
	var r spoolReader
	defer r.close()
	var ids []string
	for range 100000 {
		w, err := s.next(&r, windowEvents)
		if err != nil {
			t.Fatal(err)
		}
		if w.corrupt {
			s.skip(w, w.limit, w.limitEvents-w.acked)
			continue
		}
		if len(w.recs) == 0 {
			return ids
		}
		for _, rec := range w.recs {
			ids = append(ids, rec.id)
		}
		s.ack(w, len(w.recs))
	}
	t.Fatal("the spool never emptied")
	return nil
}

func ids(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, requestID(i))
	}
	return out
}

func sameIDs(t *testing.T, got, want []string) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got ids %v\nwant %v", got, want)
	}
}

func TestSpoolRotatesAndDeletesAcknowledgedSegments(t *testing.T) {
	dir := t.TempDir()
	s := openTestSpool(t, dir, MinSpoolMaxBytes, false)
	defer s.shut(t)
	s.add(t, 0, 200)
	if n := len(s.segs); n < 3 {
		t.Fatalf("%d segments after 200 events with %d-byte segments, want several", n, s.segMax)
	}
	sameIDs(t, s.drainIDs(t), ids(0, 200))
	if n := len(s.segs); n != 1 {
		t.Errorf("%d segments left after everything was acknowledged, want only the active one", n)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"+segmentSuffix))
	if len(files) != 1 {
		t.Errorf("segment files on disk: %v, want one", files)
	}
	if st := s.stats(); st.events != 0 || !st.oldest.IsZero() {
		t.Errorf("stats after draining = %+v", st)
	}
}

func TestSpoolOldestAgeFollowsTheCursor(t *testing.T) {
	s := openTestSpool(t, t.TempDir(), MinSpoolMaxBytes, false)
	defer s.shut(t)
	s.add(t, 0, 3) // append times 1, 2, 3 ns
	if got := s.stats().oldest.UnixNano(); got != 1 {
		t.Fatalf("oldest = %d, want 1", got)
	}
	var r spoolReader
	defer r.close()
	w, err := s.next(&r, 2)
	if err != nil || len(w.recs) != 2 {
		t.Fatalf("next = %d records, %v", len(w.recs), err)
	}
	s.ack(w, 1)
	if got := s.stats().oldest.UnixNano(); got != 2 {
		t.Errorf("oldest after one ack = %d, want 2", got)
	}
	w, _ = s.next(&r, 10)
	s.ack(w, len(w.recs))
	if st := s.stats(); st.events != 0 || !st.oldest.IsZero() {
		t.Errorf("stats after acking all = %+v", st)
	}
}

func TestSpoolSkipsARecordDamagedAfterItWasWritten(t *testing.T) {
	dir := t.TempDir()
	s := openTestSpool(t, dir, 1<<20, false)
	defer s.shut(t)
	s.add(t, 0, 10)
	// Damage the sixth record on disk, behind the spool's back.
	path := filepath.Join(dir, segmentName(s.segs[0].id))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	recLen := len(b) / 10
	b[5*recLen+recordHeaderLen+3] ^= 0xff
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s.add(t, 10, 12)
	// The five before it are published; the rest of what was written when the
	// damage was found is given up and counted; what comes after is published.
	sameIDs(t, s.drainIDs(t), ids(0, 5))
	if d := testutil.ToFloat64(s.dropped); d != 7 {
		t.Errorf("dropped = %v, want 7", d)
	}
	s.add(t, 12, 14)
	sameIDs(t, s.drainIDs(t), ids(12, 14))
}

func TestSpoolDropOldestWhileTheRelayHoldsAWindow(t *testing.T) {
	s := openTestSpool(t, t.TempDir(), MinSpoolMaxBytes, true)
	defer s.shut(t)
	s.add(t, 0, 5)
	var r spoolReader
	defer r.close()
	w, err := s.next(&r, windowEvents)
	if err != nil || len(w.recs) != 5 {
		t.Fatalf("next = %d records, %v", len(w.recs), err)
	}
	// While the window is being published, the spool fills and its segment goes.
	for i := 5; testutil.ToFloat64(s.dropped) == 0; i++ {
		if i > 10000 {
			t.Fatal("nothing was ever dropped")
		}
		s.add(t, i, i+1)
	}
	s.ack(w, len(w.recs)) // must not move the cursor into another segment
	got := s.drainIDs(t)
	dropped := int(testutil.ToFloat64(s.dropped))
	if len(got) == 0 || got[0] != requestID(dropped) {
		t.Fatalf("after dropping %d events the spool starts at %v, want %s", dropped, got[:min(1, len(got))], requestID(dropped))
	}
}

func TestSpoolRejectsWhenFull(t *testing.T) {
	s := openTestSpool(t, t.TempDir(), MinSpoolMaxBytes, false)
	defer s.shut(t)
	var err error
	n := 0
	for ; n < 10000 && err == nil; n++ {
		rec := appendRecord(nil, 1, "audit.eu.c", requestID(n), make([]byte, 500))
		err = s.append(rec, 1, 1)
	}
	if !errors.Is(err, ErrSpoolFull) {
		t.Fatalf("append to a full spool = %v, want ErrSpoolFull", err)
	}
	if st := s.stats(); st.bytes > MinSpoolMaxBytes || st.events != int64(n-1) {
		t.Errorf("stats = %+v after %d accepted", st, n-1)
	}
	if got := testutil.ToFloat64(s.rejected); got != 1 {
		t.Errorf("rejected = %v, want 1", got)
	}
}

func TestSpoolRecoversTornTails(t *testing.T) {
	full := appendRecord(nil, 7, "audit.eu.c", "req-x", []byte(`{"request_id":"req-x"}`))
	bad := append([]byte(nil), full...)
	bad[len(bad)-1] ^= 1
	tests := []struct {
		name string
		tail []byte
		want int // records the reopened spool holds
	}{
		{"clean", nil, 3},
		{"half a header", full[:5], 3},
		{"header only", full[:recordHeaderLen], 3},
		{"half a body", full[:len(full)-3], 3},
		{"zeros", make([]byte, 512), 3},
		{"bad checksum", bad, 3},
		{"whole record", full, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openTestSpool(t, dir, 1<<20, false)
			s.add(t, 0, 3)
			size := s.segs[0].size
			s.shut(t)
			appendToLastSegment(t, dir, tc.tail)

			s = openTestSpool(t, dir, 1<<20, false)
			defer s.shut(t)
			if got := s.stats().events; got != int64(tc.want) {
				t.Fatalf("reopened spool holds %d events, want %d", got, tc.want)
			}
			if tc.want == 3 {
				if st, err := os.Stat(lastSegment(t, dir)); err != nil || st.Size() != size {
					t.Errorf("segment not truncated to %d bytes: %v, %v", size, st.Size(), err)
				}
			}
			// A spool that recovered goes on appending after the good records.
			s.add(t, 3, 5)
			got := s.drainIDs(t)
			if len(got) != tc.want+2 {
				t.Fatalf("got %v", got)
			}
		})
	}
}

func TestSpoolCursorSurvivesReopen(t *testing.T) {
	tests := []struct {
		name   string
		cursor func(p position) []byte // nil: keep what writeCursor wrote
		replay int
	}{
		{"saved cursor", nil, 4},
		{"damaged cursor replays everything", func(position) []byte { return []byte("junk") }, 10},
		{"cursor off a record boundary goes back to one", func(p position) []byte {
			return cursorBytes(position{seg: p.seg, off: p.off + 3})
		}, 4},
		{"cursor past the end", func(p position) []byte {
			return cursorBytes(position{seg: p.seg, off: 1 << 40})
		}, 0},
		{"cursor on a deleted segment", func(p position) []byte {
			return cursorBytes(position{seg: p.seg - 1, off: 0})
		}, 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openTestSpool(t, dir, 1<<20, false)
			s.add(t, 0, 10)
			var r spoolReader
			w, err := s.next(&r, 6)
			if err != nil {
				t.Fatal(err)
			}
			r.close()
			s.ack(w, 6)
			pos := s.position()
			if err := writeCursor(dir, pos); err != nil {
				t.Fatal(err)
			}
			s.shut(t)
			if tc.cursor != nil {
				if err := os.WriteFile(filepath.Join(dir, cursorFile), tc.cursor(pos), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			s = openTestSpool(t, dir, 1<<20, false)
			defer s.shut(t)
			if got := s.stats().events; got != int64(tc.replay) {
				t.Fatalf("reopened spool has %d events to replay, want %d", got, tc.replay)
			}
			sameIDs(t, s.drainIDs(t), ids(10-tc.replay, 10))
		})
	}
}

func TestSpoolDeletesSegmentsBehindTheCursorAtOpen(t *testing.T) {
	dir := t.TempDir()
	s := openTestSpool(t, dir, MinSpoolMaxBytes, false)
	s.add(t, 0, 100)
	first := s.segs[0].id
	var r spoolReader
	// Acknowledge the first segment only, without letting next delete it.
	w, err := s.next(&r, windowEvents)
	r.close()
	if err != nil {
		t.Fatal(err)
	}
	s.ack(w, len(w.recs))
	if err := writeCursor(dir, position{seg: first + 1, off: 0}); err != nil {
		t.Fatal(err)
	}
	s.shut(t)
	s = openTestSpool(t, dir, MinSpoolMaxBytes, false)
	defer s.shut(t)
	if _, err := os.Stat(filepath.Join(dir, segmentName(first))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("segment behind the cursor still there: %v", err)
	}
	sameIDs(t, s.drainIDs(t), ids(len(w.recs), 100))
}

func cursorBytes(p position) []byte {
	dir, _ := os.MkdirTemp("", "cursor")
	defer os.RemoveAll(dir)
	_ = writeCursor(dir, p)
	b, _ := os.ReadFile(filepath.Join(dir, cursorFile))
	return b
}
