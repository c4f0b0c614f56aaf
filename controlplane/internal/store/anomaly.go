package store

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis-gw/portcullis/shared/audit"
)

// Anomaly rule kinds and actions.
const (
	RuleTokenSpike  = "token_spike"
	RuleNewSourceIP = "new_source_ip"
	RuleFlagRate    = "flag_rate"

	ActionAlert            = "alert"
	ActionAlertAndThrottle = "alert_and_throttle"
	ActionBlock            = "block"
)

// RuleKinds and RuleActions are the allowed kinds and actions of an anomaly rule.
var (
	RuleKinds   = []string{RuleTokenSpike, RuleNewSourceIP, RuleFlagRate}
	RuleActions = []string{ActionAlert, ActionAlertAndThrottle, ActionBlock}
)

// NetworkMemory is how long a client's source network stays known: a network not
// used for longer is new again.
const NetworkMemory = 7 * 24 * time.Hour

// AnomalyRule is one anomaly rule (migrations/0008_showback_anomaly.sql and
// 0010_anomaly_min_history.sql).
type AnomalyRule struct {
	Name              string  `json:"name"`
	Kind              string  `json:"kind"`
	Enabled           bool    `json:"enabled"`
	Factor            float64 `json:"factor"`
	BaselineDays      int     `json:"baseline_days"`
	MinBaselineTokens int64   `json:"min_baseline_tokens"`
	// MinHistoryHours and MinHistoryDays are the history token_spike needs before it
	// judges a client: that many hours with tokens, on that many distinct UTC days,
	// within the baseline window. 0 and 0 judge every client.
	MinHistoryHours int    `json:"min_history_hours"`
	MinHistoryDays  int    `json:"min_history_days"`
	Action          string `json:"action"`
	// ThrottleTokensPerHour 0 means the client's baseline (token_spike never throttles
	// below the baseline or the fair share, see package anomaly);
	// ThrottleRequestsPerMinute 0 keeps the tier's value.
	ThrottleTokensPerHour     int64  `json:"throttle_tokens_per_hour"`
	ThrottleRequestsPerMinute int64  `json:"throttle_requests_per_minute"`
	ThrottleMinutes           int    `json:"throttle_minutes"`
	WebhookURL                string `json:"webhook_url"` // "" uses the control plane's alert-webhook-url
	// FlagShare and MinRequests are flag_rate's: it fires for a client with at
	// least MinRequests requests in the last hour of which more than FlagShare were
	// flagged by the guardrails.
	FlagShare   float64 `json:"flag_share"`
	MinRequests int     `json:"min_requests"`
}

var anomalyRules = (&table[AnomalyRule]{
	name:  "anomaly_rules",
	key:   "name",
	keyOf: func(e *AnomalyRule) *string { return &e.Name },
	columns: []column[AnomalyRule]{
		col("kind", func(e *AnomalyRule) *string { return &e.Kind }),
		col("enabled", func(e *AnomalyRule) *bool { return &e.Enabled }),
		col("factor", func(e *AnomalyRule) *float64 { return &e.Factor }),
		col("baseline_days", func(e *AnomalyRule) *int { return &e.BaselineDays }),
		col("min_baseline_tokens", func(e *AnomalyRule) *int64 { return &e.MinBaselineTokens }),
		col("min_history_hours", func(e *AnomalyRule) *int { return &e.MinHistoryHours }),
		col("min_history_days", func(e *AnomalyRule) *int { return &e.MinHistoryDays }),
		col("action", func(e *AnomalyRule) *string { return &e.Action }),
		optionalCol("throttle_tokens_per_hour", func(e *AnomalyRule) *int64 { return &e.ThrottleTokensPerHour }),
		optionalCol("throttle_requests_per_minute", func(e *AnomalyRule) *int64 { return &e.ThrottleRequestsPerMinute }),
		col("throttle_minutes", func(e *AnomalyRule) *int { return &e.ThrottleMinutes }),
		nullableCol("webhook_url", func(e *AnomalyRule) *string { return &e.WebhookURL }),
		col("flag_share", func(e *AnomalyRule) *float64 { return &e.FlagShare }),
		col("min_requests", func(e *AnomalyRule) *int { return &e.MinRequests }),
	},
	history: func(r AnomalyRule) any { r.WebhookURL = redactURL(r.WebhookURL); return r },
}).init()

// AnomalyRules is the anomaly rules collection.
func (s *Store) AnomalyRules() *Collection[AnomalyRule] {
	return &Collection[AnomalyRule]{s, anomalyRules}
}

// EnabledAnomalyRules returns the enabled rules, by name.
func (s *Store) EnabledAnomalyRules(ctx context.Context) ([]AnomalyRule, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+anomalyRules.selectList()+` FROM anomaly_rules WHERE enabled ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list anomaly rules: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AnomalyRule, error) {
		rec, err := anomalyRules.scan(r)
		return rec.Entity, err
	})
	if err != nil {
		return nil, fmt.Errorf("list anomaly rules: %w", err)
	}
	return out, nil
}

// recordNetworks records, in the archive's transaction, the source networks of the
// events just archived. A network the client had not used within NetworkMemory
// before the event, while the client had called from another network before, gets
// novel_at: the detector's new_source_ip rule alerts on it. Rows are written in key
// order so that concurrent transactions lock them in the same order.
func recordNetworks(ctx context.Context, tx pgx.Tx, events []*audit.Event) error {
	type key struct{ client, net string }
	type span struct{ first, last time.Time }
	spans := map[key]*span{}
	for _, e := range events {
		if e.ClientID == "" || e.SourceNet == "" {
			continue
		}
		k := key{e.ClientID, e.SourceNet}
		if s := spans[k]; s == nil {
			spans[k] = &span{e.TS, e.TS}
		} else {
			s.first, s.last = minTime(s.first, e.TS), maxTime(s.last, e.TS)
		}
	}
	if len(spans) == 0 {
		return nil
	}
	keys := make([]key, 0, len(spans))
	for k := range spans {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b key) int { return cmp.Or(cmp.Compare(a.client, b.client), cmp.Compare(a.net, b.net)) })
	clients, nets := make([]string, len(keys)), make([]string, len(keys))
	firsts, lasts := make([]time.Time, len(keys)), make([]time.Time, len(keys))
	for i, k := range keys {
		clients[i], nets[i], firsts[i], lasts[i] = k.client, k.net, spans[k].first, spans[k].last
	}
	_, err := tx.Exec(ctx, `INSERT INTO client_networks AS n (client_id, source_net, first_seen, last_seen, novel_at)
		SELECT b.client_id, b.source_net, b.first_seen, b.last_seen,
			CASE WHEN EXISTS (SELECT 1 FROM client_networks o WHERE o.client_id = b.client_id AND o.source_net <> b.source_net)
				THEN b.first_seen END
		FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[]) AS b(client_id, source_net, first_seen, last_seen)
		ON CONFLICT (client_id, source_net) DO UPDATE SET
			novel_at = CASE WHEN n.last_seen < excluded.first_seen - $5::interval THEN excluded.first_seen ELSE n.novel_at END,
			first_seen = least(n.first_seen, excluded.first_seen),
			last_seen = greatest(n.last_seen, excluded.last_seen)`,
		clients, nets, firsts, lasts, NetworkMemory)
	if err != nil {
		return fmt.Errorf("record source networks: %w", err)
	}
	return nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// NovelNetwork is a client's network that the new_source_ip rule has not alerted on.
type NovelNetwork struct {
	ClientID  string
	SourceNet string
	NovelAt   time.Time
}

// NovelNetworks returns the networks marked new and not yet alerted on, oldest first.
func (s *Store) NovelNetworks(ctx context.Context, limit int) ([]NovelNetwork, error) {
	rows, err := s.pool.Query(ctx, `SELECT client_id, source_net, novel_at FROM client_networks
		WHERE novel_at IS NOT NULL ORDER BY novel_at LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("list new source networks: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[NovelNetwork])
	if err != nil {
		return nil, fmt.Errorf("list new source networks: %w", err)
	}
	return out, nil
}

// ClearNovelNetwork marks n as handled, unless the network was marked new again since.
func (s *Store) ClearNovelNetwork(ctx context.Context, n NovelNetwork) error {
	if _, err := s.pool.Exec(ctx, `UPDATE client_networks SET novel_at = NULL
		WHERE client_id = $1 AND source_net = $2 AND novel_at = $3`, n.ClientID, n.SourceNet, n.NovelAt); err != nil {
		return fmt.Errorf("clear new source network: %w", err)
	}
	return nil
}

// ClientTokens is a client's recent tokens, its baseline and its history, for
// token_spike.
type ClientTokens struct {
	ClientID string
	TenantID string
	// LastHour is the tokens (in + out) of the 60 minutes before now, estimated from
	// the rollup: the current hour so far, plus the previous hour's share that is
	// still inside the window (its tokens × the fraction of it after now − 1h).
	LastHour float64
	// Baseline is the mean hourly tokens over the baseline window: the days × 24
	// whole hours before the previous hour; an hour without usage counts as 0.
	Baseline float64
	// HistoryHours is the number of hours of the baseline window with tokens (in any
	// region or model), and HistoryDays the number of distinct UTC days they fall on.
	HistoryHours int
	HistoryDays  int
	// TierTokensPerHour is the tokens_per_hour of the client's tier, 0 when the
	// client or its tier no longer exists.
	TierTokensPerHour int64
}

// RecentTokens returns, for each client with tokens in the current or previous hour,
// its tokens of the last hour, its mean and its history over the baselineDays before,
// and its tier's tokens_per_hour.
func (s *Store) RecentTokens(ctx context.Context, now time.Time, baselineDays int) ([]ClientTokens, error) {
	now = now.UTC()
	cur := now.Truncate(time.Hour)
	prev := cur.Add(-time.Hour)
	inWindow := 1 - float64(now.Sub(cur))/float64(time.Hour) // share of the previous hour in the window
	hours := baselineDays * 24
	baseFrom := prev.Add(-time.Duration(hours) * time.Hour)
	rows, err := s.pool.Query(ctx, `WITH recent AS (
			SELECT client_id, max(tenant_id) AS tenant_id,
				sum(CASE WHEN hour = $2 THEN tokens_in + tokens_out ELSE (tokens_in + tokens_out) * $3::float8 END)::float8 AS tokens
			FROM usage_hourly WHERE hour >= $1 AND hour <= $2 AND client_id <> ''
			GROUP BY client_id HAVING sum(tokens_in + tokens_out) > 0
		), hourly AS (
			SELECT u.client_id, u.hour, sum(u.tokens_in + u.tokens_out) AS tokens
			FROM usage_hourly u JOIN recent r USING (client_id)
			WHERE u.hour >= $4 AND u.hour < $1
			GROUP BY u.client_id, u.hour
		), base AS (
			SELECT client_id, sum(tokens)::float8 / $5::float8 AS mean,
				count(*) FILTER (WHERE tokens > 0) AS hours,
				count(DISTINCT (hour AT TIME ZONE 'UTC')::date) FILTER (WHERE tokens > 0) AS days
			FROM hourly GROUP BY client_id
		)
		SELECT r.client_id, r.tenant_id, r.tokens, coalesce(b.mean, 0),
			coalesce(b.hours, 0)::int, coalesce(b.days, 0)::int, coalesce(t.tokens_per_hour, 0)
		FROM recent r LEFT JOIN base b USING (client_id)
			LEFT JOIN clients c ON c.client_id = r.client_id
			LEFT JOIN tiers t ON t.name = c.tier
		ORDER BY r.client_id`,
		prev, cur, inWindow, baseFrom, hours)
	if err != nil {
		return nil, fmt.Errorf("read recent tokens: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[ClientTokens])
	if err != nil {
		return nil, fmt.Errorf("read recent tokens: %w", err)
	}
	return out, nil
}

// Alert is one row of the alerts table.
type Alert struct {
	ID             int64           `json:"id"`
	Kind           string          `json:"kind"`
	Severity       string          `json:"severity"`
	ClientID       string          `json:"client_id"`
	TenantID       string          `json:"tenant_id"`
	Rule           string          `json:"rule"`
	DedupKey       string          `json:"-"`
	Message        string          `json:"message"`
	Details        json.RawMessage `json:"details"`
	CreatedAt      time.Time       `json:"created_at"`
	AcknowledgedAt *time.Time      `json:"acknowledged_at"`
	AcknowledgedBy *string         `json:"acknowledged_by"`
}

const alertCols = `id, kind, severity, client_id, tenant_id, rule, dedup_key, message, details, created_at,
	acknowledged_at, acknowledged_by`

func scanAlert(r pgx.Row) (Alert, error) {
	var a Alert
	err := r.Scan(&a.ID, &a.Kind, &a.Severity, &a.ClientID, &a.TenantID, &a.Rule, &a.DedupKey, &a.Message, &a.Details,
		&a.CreatedAt, &a.AcknowledgedAt, &a.AcknowledgedBy)
	return a, err
}

// RaiseAlert stores a unless an alert of the same rule, client and dedup key exists.
// It returns the stored alert and true, or false when a was a repeat.
func (s *Store) RaiseAlert(ctx context.Context, a Alert) (Alert, bool, error) {
	details := a.Details
	if len(details) == 0 {
		details = json.RawMessage(`{}`)
	}
	out, err := scanAlert(s.pool.QueryRow(ctx, `INSERT INTO alerts
		(kind, severity, client_id, tenant_id, rule, dedup_key, message, details)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (rule, client_id, dedup_key) DO NOTHING
		RETURNING `+alertCols, a.Kind, a.Severity, a.ClientID, a.TenantID, a.Rule, a.DedupKey, a.Message, details))
	if errors.Is(err, pgx.ErrNoRows) {
		return Alert{}, false, nil
	}
	if err != nil {
		return Alert{}, false, fmt.Errorf("record alert: %w", err)
	}
	return out, true, nil
}

// Alerts returns the latest alerts, newest first; only the unacknowledged ones when
// unacknowledged is set.
func (s *Store) Alerts(ctx context.Context, unacknowledged bool, limit int) ([]Alert, error) {
	return s.FilterAlerts(ctx, AlertFilter{Open: unacknowledged, Limit: limit})
}

// AlertFilter chooses alerts: the open ones only, of one kind, older than an id.
type AlertFilter struct {
	Open     bool   // unacknowledged only
	Kind     string // "": every kind
	BeforeID int64  // 0: from the newest
	Limit    int
}

// FilterAlerts lists the alerts f chooses, newest first.
func (s *Store) FilterAlerts(ctx context.Context, f AlertFilter) ([]Alert, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+alertCols+` FROM alerts
		WHERE (NOT $1 OR acknowledged_at IS NULL) AND ($2 = '' OR kind = $2) AND ($3 = 0 OR id < $3)
		ORDER BY id DESC LIMIT $4`, f.Open, f.Kind, f.BeforeID, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("list alerts: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Alert, error) { return scanAlert(r) })
	if err != nil {
		return nil, fmt.Errorf("list alerts: %w", err)
	}
	return out, nil
}

// AlertKinds are the kinds of the alerts stored, in order.
func (s *Store) AlertKinds(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT kind FROM alerts ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("list alert kinds: %w", err)
	}
	kinds, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list alert kinds: %w", err)
	}
	return kinds, nil
}

// OpenAlerts counts the unacknowledged alerts.
func (s *Store) OpenAlerts(ctx context.Context) (int, error) {
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM alerts WHERE acknowledged_at IS NULL`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count open alerts: %w", err)
	}
	return n, nil
}

// AckAlert records that by acknowledged alert id, and returns it. Acknowledging it
// again keeps the first acknowledgement. It returns ErrNotFound for an unknown id.
func (s *Store) AckAlert(ctx context.Context, id int64, by string) (Alert, error) {
	a, err := scanAlert(s.pool.QueryRow(ctx, `UPDATE alerts SET
		acknowledged_at = coalesce(acknowledged_at, now()), acknowledged_by = coalesce(acknowledged_by, $2)
		WHERE id = $1 RETURNING `+alertCols, id, by))
	if errors.Is(err, pgx.ErrNoRows) {
		return Alert{}, ErrNotFound
	}
	if err != nil {
		return Alert{}, fmt.Errorf("acknowledge alert %d: %w", id, err)
	}
	return a, nil
}

// redactURL is u with only its scheme and host kept: a webhook URL's path or query
// often is its secret (a Slack or Teams webhook), which the change history must not
// hold.
func redactURL(u string) string {
	if u == "" {
		return ""
	}
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return "[redacted]"
	}
	return p.Scheme + "://" + p.Host + "/[redacted]"
}

// ClientFlags is a client's requests over a window and how many of them the
// guardrails flagged, for flag_rate.
type ClientFlags struct {
	ClientID, TenantID string
	Requests, Flagged  int64
}

// FlagRates counts each client's archived requests since since, and the flagged
// ones, for the clients with at least minRequests.
func (s *Store) FlagRates(ctx context.Context, since time.Time, minRequests int) ([]ClientFlags, error) {
	rows, err := s.pool.Query(ctx, `SELECT client_id, max(tenant_id), count(*), count(*) FILTER (WHERE flagged)
		FROM audit_events WHERE ts >= $1 AND client_id <> '' GROUP BY client_id HAVING count(*) >= $2
		ORDER BY client_id`, since, minRequests)
	if err != nil {
		return nil, fmt.Errorf("count flagged requests: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[ClientFlags])
	if err != nil {
		return nil, fmt.Errorf("count flagged requests: %w", err)
	}
	return out, nil
}
