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

// usageKey is the primary key of a usage_hourly row.
type usageKey struct {
	hour          time.Time
	region        string
	client, model string
}

// addUsage adds the events just archived to usage_hourly, in the archive's
// transaction.
func addUsage(ctx context.Context, tx pgx.Tx, events []*audit.Event) error {
	sums := map[usageKey]*HourlyUsage{}
	for _, e := range events {
		k := usageKey{hour: e.TS.UTC().Truncate(time.Hour), region: e.Region, client: e.ClientID, model: e.Model}
		u := sums[k]
		if u == nil {
			u = &HourlyUsage{Hour: k.hour, Region: e.Region, TenantID: e.TenantID, ClientID: e.ClientID, Model: e.Model}
			sums[k] = u
		}
		u.Requests++
		u.TokensIn += max(e.TokensIn, 0)
		u.TokensOut += max(e.TokensOut, 0)
		u.CostUSDMicros += max(e.CostUSDMicros, 0)
	}
	rows := make([]HourlyUsage, 0, len(sums))
	for _, u := range sums {
		rows = append(rows, *u)
	}
	return upsertUsage(ctx, tx, rows)
}

// upsertUsage adds rows to usage_hourly. Rows are written in key order so that
// concurrent transactions lock them in the same order.
func upsertUsage(ctx context.Context, tx pgx.Tx, rows []HourlyUsage) error {
	if len(rows) == 0 {
		return nil
	}
	slices.SortFunc(rows, func(a, b HourlyUsage) int {
		return cmp.Or(a.Hour.Compare(b.Hour), cmp.Compare(a.Region, b.Region),
			cmp.Compare(a.ClientID, b.ClientID), cmp.Compare(a.Model, b.Model))
	})
	n := len(rows)
	hours, regions, tenants, clients, models := make([]time.Time, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	requests, in, out, cost := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	for i, u := range rows {
		hours[i], regions[i], tenants[i], clients[i], models[i] = u.Hour, u.Region, u.TenantID, u.ClientID, u.Model
		requests[i], in[i], out[i], cost[i] = u.Requests, u.TokensIn, u.TokensOut, u.CostUSDMicros
	}
	_, err := tx.Exec(ctx, `INSERT INTO usage_hourly
		(hour, region, tenant_id, client_id, model, requests, tokens_in, tokens_out, cost_usd_micros)
		SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[],
			$6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[])
		ON CONFLICT (hour, region, client_id, model) DO UPDATE SET
			requests = usage_hourly.requests + excluded.requests,
			tokens_in = usage_hourly.tokens_in + excluded.tokens_in,
			tokens_out = usage_hourly.tokens_out + excluded.tokens_out,
			cost_usd_micros = usage_hourly.cost_usd_micros + excluded.cost_usd_micros,
			tenant_id = CASE WHEN usage_hourly.tenant_id = '' THEN excluded.tenant_id ELSE usage_hourly.tenant_id END`,
		hours, regions, tenants, clients, models, requests, in, out, cost)
	if err != nil {
		return fmt.Errorf("add to usage rollup: %w", err)
	}
	return nil
}

// UsageGroups are the ways Usage can group its rows.
var UsageGroups = []string{"client", "tenant", "model"}

// usageColumn is the usage_hourly column of each group.
var usageColumn = map[string]string{"client": "client_id", "tenant": "tenant_id", "model": "model"}

// UsageRow is the usage of one client, tenant or model over a range.
type UsageRow struct {
	Key           string // the client id, tenant id or model
	Requests      int64
	TokensIn      int64
	TokensOut     int64
	CostUSDMicros int64
}

// Usage sums the hourly rollup of every region over the hours starting in
// [from, to), grouped by groupBy (one of UsageGroups), in key order; under a tenant
// scope (WithTenants), only the rows of its tenants.
func (s *Store) Usage(ctx context.Context, groupBy string, from, to time.Time) ([]UsageRow, error) {
	return s.sumUsage(ctx, groupBy, from, to, 0)
}

// TopUsage is the n rows of Usage(groupBy) over [from, to) with the most tokens (in
// and out), most first; under a tenant scope, only its tenants' rows.
func (s *Store) TopUsage(ctx context.Context, groupBy string, from, to time.Time, n int) ([]UsageRow, error) {
	return s.sumUsage(ctx, groupBy, from, to, max(n, 1))
}

// sumUsage is Usage in key order when top is 0, else its top rows by tokens.
func (s *Store) sumUsage(ctx context.Context, groupBy string, from, to time.Time, top int) ([]UsageRow, error) {
	column, ok := usageColumn[groupBy]
	if !ok {
		return nil, fmt.Errorf("usage: cannot group by %q", groupBy)
	}
	args := []any{from, to}
	scope := ""
	if tenants, ok := TenantsOf(ctx); ok {
		args = append(args, tenants)
		scope = " AND tenant_id = ANY($3::text[])"
	}
	order := " ORDER BY 1"
	if top > 0 {
		args = append(args, top)
		order = fmt.Sprintf(" ORDER BY sum(tokens_in) + sum(tokens_out) DESC, 1 LIMIT $%d", len(args))
	}
	rows, err := s.pool.Query(ctx, `SELECT `+column+`, sum(requests)::bigint, sum(tokens_in)::bigint,
		sum(tokens_out)::bigint, sum(cost_usd_micros)::bigint
		FROM usage_hourly WHERE hour >= $1 AND hour < $2`+scope+` GROUP BY 1`+order, args...)
	if err != nil {
		return nil, fmt.Errorf("read usage: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (UsageRow, error) {
		var u UsageRow
		err := r.Scan(&u.Key, &u.Requests, &u.TokensIn, &u.TokensOut, &u.CostUSDMicros)
		return u, err
	})
	if err != nil {
		return nil, fmt.Errorf("read usage: %w", err)
	}
	return out, nil
}

// HourlyUsage is one row of the rollup, for tests and history imports.
type HourlyUsage struct {
	Hour          time.Time
	Region        string
	TenantID      string
	ClientID      string
	Model         string
	Requests      int64
	TokensIn      int64
	TokensOut     int64
	CostUSDMicros int64
}

// AddHourlyUsage adds rows to the rollup as if their events had been archived, e.g.
// to import history kept elsewhere. Each Hour must be a whole UTC hour.
func (s *Store) AddHourlyUsage(ctx context.Context, rows []HourlyUsage) error {
	for i := range rows {
		if !rows[i].Hour.Equal(rows[i].Hour.Truncate(time.Hour)) {
			return fmt.Errorf("import usage: %v is not a whole hour", rows[i].Hour)
		}
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		return upsertUsage(ctx, tx, slices.Clone(rows))
	})
	if err != nil {
		return fmt.Errorf("import usage: %w", err)
	}
	return nil
}
