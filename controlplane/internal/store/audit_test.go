package store_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive/chain"
	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive/export"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store/storetest"
	"github.com/portcullis-gw/portcullis/shared/audit"
)

var auditT0 = time.Date(2026, 4, 14, 20, 0, 0, 0, time.UTC)

func auditEvent(t *testing.T, region, requestID, client string, ts time.Time) store.AuditEvent {
	t.Helper()
	e := audit.Event{V: audit.SchemaVersion, TS: ts, RequestID: requestID, Region: region, Worker: region + "-1",
		ClientID: client, Operation: "chat", Model: "gpt-4o", TokensIn: 12, TokensOut: 3, Status: 200,
		Flags: []audit.Flag{}, Headers: map[string]string{"x-request-id": requestID}}
	b, err := chain.Canonical(e)
	if err != nil {
		t.Fatal(err)
	}
	return store.AuditEvent{Event: e, JSON: b}
}

// exportAudit exports q as NDJSON, verifies it, and returns the events' request ids
// in seq order and the summary.
func exportAudit(t *testing.T, st *store.Store, q store.AuditQuery) ([]string, export.Summary) {
	t.Helper()
	var buf bytes.Buffer
	w := export.NewWriter(&buf, export.NDJSON)
	var ids []string
	head, err := st.ExportAudit(context.Background(), q, func(r store.AuditRow) error {
		e, err := audit.Decode(r.Event)
		if err != nil {
			return err
		}
		ids = append(ids, e.RequestID)
		return w.Row(export.Row{Seq: r.Seq, PrevHash: r.PrevHash, ChainHash: r.ChainHash, Event: r.Event})
	})
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	var client *string
	if q.ClientID != "" {
		client = &q.ClientID
	}
	if err := w.Finish(export.Head{Region: q.Region, Seq: head.Seq, Hash: head.Hash, ExportedAt: head.At, From: q.From, To: q.To, Client: client}); err != nil {
		t.Fatal(err)
	}
	sum, err := export.Verify(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("the export does not verify: %v\n%s", err, buf.String())
	}
	return ids, sum
}

func wholeRange(region string) store.AuditQuery {
	return store.AuditQuery{Region: region, From: auditT0.AddDate(-1, 0, 0), To: auditT0.AddDate(1, 0, 0)}
}

func TestAppendAuditArchivesEachRequestIDOnce(t *testing.T) {
	st, _ := storetest.Open(t)
	ctx := context.Background()
	ev := func(id string) store.AuditEvent { return auditEvent(t, "eu", id, "c1", auditT0) }
	tests := []struct {
		name       string
		batch      []store.AuditEvent
		stored     int
		duplicates int
	}{
		{"new events, one repeated in the batch", []store.AuditEvent{ev("r1"), ev("r2"), ev("r1"), ev("r3")}, 3, 1},
		{"a redelivery", []store.AuditEvent{ev("r2"), ev("r3")}, 0, 2},
		{"old and new mixed", []store.AuditEvent{ev("r3"), ev("r4"), ev("r1"), ev("r5")}, 2, 2},
		{"empty", nil, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := st.AppendAudit(ctx, "eu", tc.batch)
			if err != nil {
				t.Fatal(err)
			}
			if res.Stored != tc.stored || res.Duplicates != tc.duplicates {
				t.Fatalf("got %+v, want %d stored and %d duplicates", res, tc.stored, tc.duplicates)
			}
		})
	}
	ids, sum := exportAudit(t, st, wholeRange("eu"))
	if want := []string{"r1", "r2", "r3", "r4", "r5"}; !slices.Equal(ids, want) {
		t.Fatalf("archived %v, want %v", ids, want)
	}
	if sum.Head.Seq != 5 || !sum.ReachesHead || sum.Head.FirstSeq != 1 {
		t.Fatalf("summary %+v", sum)
	}
}

func TestAppendAuditRefusesABatchOfAnotherRegion(t *testing.T) {
	st, _ := storetest.Open(t)
	ctx := context.Background()
	if _, err := st.AppendAudit(ctx, "eu", []store.AuditEvent{auditEvent(t, "us", "r1", "c", auditT0)}); err == nil {
		t.Fatal("a us event was archived in eu's chain")
	}
	if _, err := st.AppendAudit(ctx, "EU'; --", nil); err == nil {
		t.Fatal("an invalid region name was accepted")
	}
}

func TestAuditPartitionsPerRegionAndMonthKeepRegionsApart(t *testing.T) {
	st, dbURL := storetest.Open(t)
	ctx := context.Background()
	regions := []string{"eu", "us", strings.Repeat("r", 50)} // the last gets a hashed partition name
	months := []time.Time{auditT0.AddDate(0, -1, 0), auditT0, auditT0.AddDate(0, 1, 0)}
	for _, region := range regions {
		var batch []store.AuditEvent
		for i, m := range months {
			batch = append(batch, auditEvent(t, region, fmt.Sprintf("%s-%d", region, i), "c", m))
		}
		if _, err := st.AppendAudit(ctx, region, batch); err != nil {
			t.Fatal(err)
		}
	}
	for _, region := range regions {
		ids, sum := exportAudit(t, st, wholeRange(region))
		if len(ids) != len(months) || sum.Head.Region != region {
			t.Fatalf("region %s exported %v", region, ids)
		}
		for _, id := range ids {
			if !strings.HasPrefix(id, region+"-") {
				t.Fatalf("region %s's export holds %s", region, id)
			}
		}
	}
	var n int
	if err := connect(t, dbURL).QueryRow(ctx, `SELECT count(*) FROM pg_inherits i
		JOIN pg_class p ON p.oid = i.inhparent JOIN pg_class c ON c.oid = i.inhrelid
		WHERE p.relname LIKE 'audit_events_%' AND c.relkind = 'r'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(regions)*len(months) {
		t.Fatalf("%d monthly partitions, want %d", n, len(regions)*len(months))
	}
}

func TestConcurrentAppendersKeepOneGaplessChain(t *testing.T) {
	st, _ := storetest.Open(t)
	ctx := context.Background()
	const appenders, batches, size = 4, 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, appenders*batches)
	for a := range appenders {
		wg.Go(func() {
			for b := range batches {
				var batch []store.AuditEvent
				for i := range size {
					// Appenders 0 and 1 send the same ids, as two replicas would after a redelivery.
					id := fmt.Sprintf("a%d-b%d-%d", a/2*2, b, i)
					batch = append(batch, auditEvent(t, "eu", id, "c", auditT0.Add(time.Duration(i)*time.Millisecond)))
				}
				if _, err := st.AppendAudit(ctx, "eu", batch); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	ids, sum := exportAudit(t, st, wholeRange("eu"))
	want := appenders / 2 * batches * size
	if len(ids) != want || sum.Head.Seq != int64(want) || !sum.ReachesHead {
		t.Fatalf("%d events archived, head %d; want %d", len(ids), sum.Head.Seq, want)
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Fatalf("%s archived twice", id)
		}
		seen[id] = true
	}
}

func TestExportAuditRanges(t *testing.T) {
	st, _ := storetest.Open(t)
	ctx := context.Background()
	at := func(min int) time.Time { return auditT0.Add(time.Duration(min) * time.Minute) }
	// Archive order: a (10:00+0), b (+10), late (-30, replayed late), c (+20), d (+40).
	for _, e := range []store.AuditEvent{
		auditEvent(t, "eu", "a", "c1", at(0)),
		auditEvent(t, "eu", "b", "c2", at(10)),
		auditEvent(t, "eu", "late", "c1", at(-30)),
		auditEvent(t, "eu", "c", "c1", at(20)),
		auditEvent(t, "eu", "d", "c2", at(40)),
	} {
		if _, err := st.AppendAudit(ctx, "eu", []store.AuditEvent{e}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		from    int
		to      int
		client  string
		want    []string
		outside int64
	}{
		{"unbroken piece with a late event inside", 0, 30, "", []string{"a", "b", "late", "c"}, 1},
		{"range ends before the late event", 0, 15, "", []string{"a", "b"}, 0},
		{"only the late event's time", -40, -20, "", []string{"late"}, 0},
		{"one client", 0, 30, "c1", []string{"a", "c"}, 0},
		{"to is exclusive", 40, 41, "", []string{"d"}, 0},
		{"empty", 100, 200, "", nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ids, sum := exportAudit(t, st, store.AuditQuery{Region: "eu", From: at(tc.from), To: at(tc.to), ClientID: tc.client})
			if !slices.Equal(ids, tc.want) || sum.OutsideRange != tc.outside || sum.Head.Seq != 5 {
				t.Fatalf("got %v (%d outside the range, head %d), want %v (%d outside)", ids, sum.OutsideRange, sum.Head.Seq, tc.want, tc.outside)
			}
		})
	}
	if _, sum := exportAudit(t, st, wholeRange("us")); sum.Head.Seq != 0 || sum.Head.Hash != chain.Genesis("us") {
		t.Fatalf("a region without events: head %+v", sum.Head)
	}
}

// TestANewPartitionDoesNotWaitForOpenExports: a long export keeps its snapshot and
// its locks on audit_events; the first event of a new month or region must still be
// archived meanwhile.
func TestANewPartitionDoesNotWaitForOpenExports(t *testing.T) {
	st, dbURL := storetest.Open(t)
	ctx := context.Background()
	if _, err := st.AppendAudit(ctx, "eu", []store.AuditEvent{auditEvent(t, "eu", "april", "c", auditT0)}); err != nil {
		t.Fatal(err)
	}
	reader := connect(t, dbURL)
	tx, err := reader.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	var n int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM audit_events`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("count %d: %v", n, err)
	}
	// Bounded so that a lock wait fails the test instead of hanging it.
	actx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for _, e := range []store.AuditEvent{
		auditEvent(t, "eu", "may", "c", auditT0.AddDate(0, 1, 0)),
		auditEvent(t, "us", "first-us", "c", auditT0),
	} {
		if _, err := st.AppendAudit(actx, e.Event.Region, []store.AuditEvent{e}); err != nil {
			t.Fatalf("archiving %s while an export is open: %v", e.Event.RequestID, err)
		}
	}
}

// TestAppendAuditKeepsTheClientRequestIDApart: events that share a client's
// X-Request-Id but not the gateway's request id are each archived, with the
// client's id in its own column.
func TestAppendAuditKeepsTheClientRequestIDApart(t *testing.T) {
	st, dbURL := storetest.Open(t)
	ctx := context.Background()
	var batch []store.AuditEvent
	for _, id := range []string{"gw-1", "gw-2", "gw-3"} {
		e := auditEvent(t, "eu", id, "c1", auditT0)
		e.Event.ClientRequestID = "same"
		b, err := chain.Canonical(e.Event)
		if err != nil {
			t.Fatal(err)
		}
		e.JSON = b
		batch = append(batch, e)
	}
	res, err := st.AppendAudit(ctx, "eu", batch)
	if err != nil || res.Stored != 3 {
		t.Fatalf("append: %+v %v, want 3 stored", res, err)
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE region = 'eu' AND client_request_id = 'same'`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("%d rows with client_request_id same (%v), want 3", n, err)
	}
}
