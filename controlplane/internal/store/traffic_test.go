package store_test

import (
	"context"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive/chain"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store/storetest"
	"github.com/portcullis-gw/portcullis/migrations"
)

// TestTrafficRollup: the archive adds each event to its region's hour in
// traffic_hourly: requests, errors (5xx), refusals (4xx), tokens, cost and the
// latency bucket; a second batch adds to the same row, bucket by bucket; a
// duplicate adds nothing; a tenant scope may not read it.
func TestTrafficRollup(t *testing.T) {
	st, _ := storetest.Open(t)
	ctx := context.Background()
	h0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	ev := func(id string, ts time.Time, status int, latency int64) store.AuditEvent {
		e := auditEvent(t, "eu", id, "c1", ts)
		e.Event.Status, e.Event.LatencyMS, e.Event.CostUSDMicros = status, latency, 7
		return reencode(t, e)
	}
	first := []store.AuditEvent{
		ev("r1", h0.Add(time.Minute), 200, 1),    // bucket 0 (≤ 1 ms)
		ev("r2", h0.Add(2*time.Minute), 200, 40), // bucket 5 (≤ 50)
		ev("r3", h0.Add(3*time.Minute), 502, 90000),
		ev("r4", h0.Add(61*time.Minute), 429, 3), // the next hour
	}
	if _, err := st.AppendAudit(ctx, "eu", first); err != nil {
		t.Fatal(err)
	}
	second := []store.AuditEvent{ev("r5", h0.Add(4*time.Minute), 200, 40), first[0]}
	if res, err := st.AppendAudit(ctx, "eu", second); err != nil || res.Duplicates != 1 {
		t.Fatalf("second batch: %+v %v", res, err)
	}
	rows, err := st.Traffic(ctx, h0, h0.Add(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 {
		t.Fatalf("rows: %+v", rows)
	}
	a, b := rows[0], rows[1]
	wantA := make([]int64, 16)
	wantA[0], wantA[5], wantA[15] = 1, 2, 1
	if !a.Hour.Equal(h0) || a.Region != "eu" || a.Requests != 4 || a.Errors != 1 || a.Refused != 0 ||
		a.TokensIn != 48 || a.TokensOut != 12 || a.CostUSDMicros != 28 || !slices.Equal(a.Latency, wantA) {
		t.Fatalf("first hour: %+v", a)
	}
	if !b.Hour.Equal(h0.Add(time.Hour)) || b.Requests != 1 || b.Refused != 1 || b.Errors != 0 || b.Latency[2] != 1 {
		t.Fatalf("second hour: %+v", b)
	}
	if _, err := st.Traffic(store.WithTenants(ctx, []string{"t1"}), h0, h0.Add(time.Hour)); err == nil {
		t.Fatal("a tenant scope read the whole gateway's traffic")
	}
}

// TestLatencyQuantile: quantiles interpolate inside the bucket they fall in; the
// open last bucket answers its lower bound; nothing counted is 0.
func TestLatencyQuantile(t *testing.T) {
	b := make([]int64, 16)
	b[3] = 100 // (5, 10] ms
	if got := store.LatencyQuantile(b, 0.5); got != 7.5 {
		t.Fatalf("p50 of 100 in (5,10]: %v", got)
	}
	b[15] = 100
	if got := store.LatencyQuantile(b, 0.95); got != 60000 {
		t.Fatalf("p95 in the open bucket: %v", got)
	}
	if got := store.LatencyQuantile(b, 0.25); got != 7.5 {
		t.Fatalf("p25: %v", got)
	}
	if got := store.LatencyQuantile(make([]int64, 16), 0.5); got != 0 {
		t.Fatalf("empty: %v", got)
	}
}

// TestUsageByHourTopAndRecent: the hourly usage per region, narrowed by a tenant
// scope and by a key; the top clients by tokens; a client's newest requests across
// regions.
func TestUsageByHourTopAndRecent(t *testing.T) {
	st, _ := storetest.Open(t)
	ctx := context.Background()
	h0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	var eu, us []store.AuditEvent
	for i := range 6 {
		client, tenant := "big", "t1"
		if i%3 == 0 {
			client, tenant = "small", "t2"
		}
		e := auditEvent(t, "eu", fmt.Sprintf("eu-%d", i), client, h0.Add(time.Duration(i)*time.Minute))
		e.Event.TenantID = tenant
		eu = append(eu, reencode(t, e))
	}
	u := auditEvent(t, "us", "us-0", "big", h0.Add(30*time.Minute))
	u.Event.TenantID = "t1"
	us = append(us, reencode(t, u))
	if _, err := st.AppendAudit(ctx, "eu", eu); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AppendAudit(ctx, "us", us); err != nil {
		t.Fatal(err)
	}
	to := h0.Add(time.Hour)
	all, err := st.UsageByHour(ctx, h0, to, "", "")
	if err != nil || len(all) != 2 || all[0].Region != "eu" || all[0].Requests != 6 || all[1].Region != "us" || all[1].Requests != 1 {
		t.Fatalf("by hour: %+v %v", all, err)
	}
	scoped, err := st.UsageByHour(store.WithTenants(ctx, []string{"t2"}), h0, to, "", "")
	if err != nil || len(scoped) != 1 || scoped[0].Requests != 2 {
		t.Fatalf("t2's: %+v %v", scoped, err)
	}
	one, err := st.UsageByHour(ctx, h0, to, "client", "big")
	if err != nil || len(one) != 2 || one[0].Requests != 4 || one[1].Requests != 1 {
		t.Fatalf("big's: %+v %v", one, err)
	}
	top, err := st.TopUsage(ctx, "client", h0, to, 1)
	if err != nil || len(top) != 1 || top[0].Key != "big" || top[0].Requests != 5 {
		t.Fatalf("top: %+v %v", top, err)
	}
	top, err = st.TopUsage(store.WithTenants(ctx, []string{"t2"}), "client", h0, to, 5)
	if err != nil || len(top) != 1 || top[0].Key != "small" {
		t.Fatalf("t2's top: %+v %v", top, err)
	}
	recent, err := st.RecentRequests(ctx, "big", 3)
	if err != nil || len(recent) != 3 || recent[0].RequestID != "us-0" || recent[1].RequestID != "eu-5" || recent[2].RequestID != "eu-4" {
		t.Fatalf("recent: %+v %v", recent, err)
	}
	// A client moved to t2 later: t2's scope does not see what it did in t1.
	if recent, err := st.RecentRequests(store.WithTenants(ctx, []string{"t2"}), "big", 3); err != nil || len(recent) != 0 {
		t.Fatalf("big's requests under t2's scope: %+v %v", recent, err)
	}
	if recent, err := st.RecentRequests(store.WithTenants(ctx, []string{"t1"}), "big", 10); err != nil || len(recent) != 5 {
		t.Fatalf("big's requests under t1's scope: %+v %v", recent, err)
	}
}

// reencode makes e's JSON match its edited event.
func reencode(t *testing.T, e store.AuditEvent) store.AuditEvent {
	t.Helper()
	b, err := chain.Canonical(e.Event)
	if err != nil {
		t.Fatal(err)
	}
	e.JSON = b
	return e
}

// TestTrafficBackfill: migration 0019's backfill, run over archived events, gives the
// rows the archive itself adds, latency buckets included.
func TestTrafficBackfill(t *testing.T) {
	st, dbURL := storetest.Open(t)
	ctx := context.Background()
	h0 := time.Now().UTC().Truncate(time.Hour).Add(-3 * time.Hour)
	var evs []store.AuditEvent
	for i, lat := range []int64{0, 1, 2, 3, 7, 24, 25, 26, 99, 250, 999, 2500, 4000, 10000, 29999, 60000, 60001, 1 << 40} {
		e := auditEvent(t, "eu", fmt.Sprintf("r%d", i), "c1", h0.Add(time.Duration(i)*7*time.Minute))
		e.Event.LatencyMS, e.Event.Status, e.Event.CostUSDMicros = lat, 200+i*20, int64(i)
		evs = append(evs, reencode(t, e))
	}
	if _, err := st.AppendAudit(ctx, "eu", evs); err != nil {
		t.Fatal(err)
	}
	want, err := st.Traffic(ctx, h0, h0.Add(4*time.Hour))
	if err != nil || len(want) < 2 {
		t.Fatalf("archived: %+v %v", want, err)
	}
	sql, err := fs.ReadFile(migrations.FS, "0019_traffic_hourly.sql")
	if err != nil {
		t.Fatal(err)
	}
	backfill := string(sql[strings.Index(string(sql), "INSERT INTO traffic_hourly"):])
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DELETE FROM traffic_hourly"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, backfill); err != nil {
		t.Fatalf("backfill: %v", err)
	}
	got, err := st.Traffic(ctx, h0, h0.Add(4*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("backfill\n got %+v\nwant %+v", got, want)
	}
}
