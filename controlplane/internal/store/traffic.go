package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis-gw/portcullis/shared/audit"
)

// LatencyBoundsMS are the upper bounds of traffic_hourly's latency buckets, in
// milliseconds; the bucket after the last counts everything slower.
var LatencyBoundsMS = []int64{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000}

// latencyBuckets is how many buckets a traffic row has.
const latencyBuckets = 16

// TrafficHour is one region's traffic in one UTC hour, from traffic_hourly.
type TrafficHour struct {
	Hour          time.Time
	Region        string
	Requests      int64
	Errors        int64 // status >= 500
	Refused       int64 // status 400–499
	TokensIn      int64
	TokensOut     int64
	CostUSDMicros int64
	Latency       []int64 // counts per bucket of LatencyBoundsMS, and one beyond
}

// latencyBucket is the index of the bucket that counts ms.
func latencyBucket(ms int64) int {
	i, _ := slices.BinarySearch(LatencyBoundsMS, ms)
	return i
}

// addTraffic adds the events just archived to traffic_hourly, in the archive's
// transaction (which holds the region's chain lock, so two archives never add to one
// row at once).
func addTraffic(ctx context.Context, tx pgx.Tx, events []*audit.Event) error {
	sums := map[usageKey]*TrafficHour{}
	for _, e := range events {
		k := usageKey{hour: e.TS.UTC().Truncate(time.Hour), region: e.Region}
		t := sums[k]
		if t == nil {
			t = &TrafficHour{Hour: k.hour, Region: e.Region, Latency: make([]int64, latencyBuckets)}
			sums[k] = t
		}
		t.Requests++
		switch {
		case e.Status >= 500:
			t.Errors++
		case e.Status >= 400:
			t.Refused++
		}
		t.TokensIn += max(e.TokensIn, 0)
		t.TokensOut += max(e.TokensOut, 0)
		t.CostUSDMicros += max(e.CostUSDMicros, 0)
		t.Latency[latencyBucket(e.LatencyMS)]++
	}
	rows := slices.Collect(func(yield func(*TrafficHour) bool) {
		for _, t := range sums {
			if !yield(t) {
				return
			}
		}
	})
	slices.SortFunc(rows, func(a, b *TrafficHour) int {
		return cmp.Or(a.Hour.Compare(b.Hour), cmp.Compare(a.Region, b.Region))
	})
	var batch pgx.Batch
	for _, t := range rows {
		batch.Queue(`INSERT INTO traffic_hourly (hour, region, requests, errors, refused, tokens_in, tokens_out, cost_usd_micros, latency_buckets)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
			ON CONFLICT (hour, region) DO UPDATE SET
				requests = traffic_hourly.requests + excluded.requests,
				errors = traffic_hourly.errors + excluded.errors,
				refused = traffic_hourly.refused + excluded.refused,
				tokens_in = traffic_hourly.tokens_in + excluded.tokens_in,
				tokens_out = traffic_hourly.tokens_out + excluded.tokens_out,
				cost_usd_micros = traffic_hourly.cost_usd_micros + excluded.cost_usd_micros,
				latency_buckets = ARRAY(SELECT a + b FROM unnest(traffic_hourly.latency_buckets, excluded.latency_buckets) AS t(a, b))`,
			t.Hour, t.Region, t.Requests, t.Errors, t.Refused, t.TokensIn, t.TokensOut, t.CostUSDMicros, t.Latency)
	}
	if err := tx.SendBatch(ctx, &batch).Close(); err != nil {
		return fmt.Errorf("add to traffic rollup: %w", err)
	}
	return nil
}

// Traffic reads the traffic rollup of the hours starting in [from, to), by region
// then hour. It is the whole gateway's traffic: callers under a tenant scope must
// not show it (see UsageByHour).
func (s *Store) Traffic(ctx context.Context, from, to time.Time) ([]TrafficHour, error) {
	if _, scoped := TenantsOf(ctx); scoped {
		return nil, fmt.Errorf("traffic: the whole gateway's traffic is not for a tenant scope")
	}
	rows, err := s.pool.Query(ctx, `SELECT hour, region, requests, errors, refused, tokens_in, tokens_out, cost_usd_micros, latency_buckets
		FROM traffic_hourly WHERE hour >= $1 AND hour < $2 ORDER BY region, hour`, from, to)
	if err != nil {
		return nil, fmt.Errorf("read traffic: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (TrafficHour, error) {
		var t TrafficHour
		err := r.Scan(&t.Hour, &t.Region, &t.Requests, &t.Errors, &t.Refused, &t.TokensIn, &t.TokensOut, &t.CostUSDMicros, &t.Latency)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("read traffic: %w", err)
	}
	return out, nil
}

// LatencyQuantile estimates the q-quantile (0 < q < 1) of the latencies counted in
// buckets (laid out as LatencyBoundsMS), in milliseconds, interpolating linearly
// inside the bucket it falls in; the open last bucket answers its lower bound. It
// is 0 when buckets count nothing.
func LatencyQuantile(buckets []int64, q float64) float64 {
	var total int64
	for _, n := range buckets {
		total += n
	}
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var seen float64
	for i, n := range buckets {
		if n == 0 {
			continue
		}
		if seen+float64(n) >= rank {
			lo := 0.0
			if i > 0 {
				lo = float64(LatencyBoundsMS[i-1])
			}
			if i >= len(LatencyBoundsMS) {
				return lo
			}
			hi := float64(LatencyBoundsMS[i])
			return lo + (hi-lo)*(rank-seen)/float64(n)
		}
		seen += float64(n)
	}
	return float64(LatencyBoundsMS[len(LatencyBoundsMS)-1])
}

// UsageHour is the usage of one region in one UTC hour, from usage_hourly.
type UsageHour struct {
	Hour          time.Time
	Region        string
	Requests      int64
	TokensIn      int64
	TokensOut     int64
	CostUSDMicros int64
}

// UsageByHour sums the usage rollup of the hours starting in [from, to) per region
// and hour, by region then hour; under a tenant scope, only its tenants' rows. A
// non-empty key narrows it to the rows whose groupBy column (one of UsageGroups) is
// key.
func (s *Store) UsageByHour(ctx context.Context, from, to time.Time, groupBy, key string) ([]UsageHour, error) {
	args := []any{from, to}
	where := "hour >= $1 AND hour < $2"
	if tenants, ok := TenantsOf(ctx); ok {
		args = append(args, tenants)
		where += fmt.Sprintf(" AND tenant_id = ANY($%d::text[])", len(args))
	}
	if key != "" {
		column, ok := usageColumn[groupBy]
		if !ok {
			return nil, fmt.Errorf("usage: cannot group by %q", groupBy)
		}
		args = append(args, key)
		where += fmt.Sprintf(" AND %s = $%d", column, len(args))
	}
	rows, err := s.pool.Query(ctx, `SELECT hour, region, sum(requests)::bigint, sum(tokens_in)::bigint,
		sum(tokens_out)::bigint, sum(cost_usd_micros)::bigint
		FROM usage_hourly WHERE `+where+` GROUP BY 2, 1 ORDER BY 2, 1`, args...)
	if err != nil {
		return nil, fmt.Errorf("read usage by hour: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (UsageHour, error) {
		var u UsageHour
		err := r.Scan(&u.Hour, &u.Region, &u.Requests, &u.TokensIn, &u.TokensOut, &u.CostUSDMicros)
		return u, err
	})
	if err != nil {
		return nil, fmt.Errorf("read usage by hour: %w", err)
	}
	return out, nil
}

// RecentRequest is one archived request's metadata, for a client's page.
type RecentRequest struct {
	TS                  time.Time
	Region, RequestID   string
	Operation, Model    string
	Deployment          string
	Status              int
	ErrorCode           *string
	TokensIn, TokensOut int64
	CostUSDMicros       int64
	LatencyMS           int64
	Stream, Fallback    bool
	Flagged             bool
}

// RecentRequests reads a client's n newest archived requests across every region,
// newest first: each region's index on (region, client_id, ts) gives its newest,
// and the newest n of those are kept. Under a tenant scope, only requests made
// while the client was in one of its tenants.
func (s *Store) RecentRequests(ctx context.Context, client string, n int) ([]RecentRequest, error) {
	args := []any{client, n}
	scope := ""
	if tenants, ok := TenantsOf(ctx); ok {
		args = append(args, tenants)
		scope = " AND tenant_id = ANY($3::text[])"
	}
	rows, err := s.pool.Query(ctx, `SELECT e.* FROM audit_chain ch CROSS JOIN LATERAL (
			SELECT ts, region, request_id, operation, model, deployment, status, error_code, tokens_in, tokens_out,
				cost_usd_micros, latency_ms, stream, fallback, flagged
			FROM audit_events WHERE region = ch.region AND client_id = $1`+scope+` ORDER BY ts DESC LIMIT $2) e
		ORDER BY e.ts DESC LIMIT $2`, args...)
	if err != nil {
		return nil, fmt.Errorf("read recent requests: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (RecentRequest, error) {
		var q RecentRequest
		err := r.Scan(&q.TS, &q.Region, &q.RequestID, &q.Operation, &q.Model, &q.Deployment, &q.Status, &q.ErrorCode,
			&q.TokensIn, &q.TokensOut, &q.CostUSDMicros, &q.LatencyMS, &q.Stream, &q.Fallback, &q.Flagged)
		return q, err
	})
	if err != nil {
		return nil, fmt.Errorf("read recent requests: %w", err)
	}
	return out, nil
}
