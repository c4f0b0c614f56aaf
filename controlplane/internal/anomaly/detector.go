// Package anomaly runs the anomaly rules of Postgres (docs/design.md §8) against the usage
// the audit ingest archives: token_spike (a client with an established pattern whose
// tokens of the last hour exceed factor × its trailing baseline) and new_source_ip (a
// client calling from a network it has not used for 7 days). A rule that fires raises
// one alert through package alerting (a row in alerts, an event on PC_ALERTS and an
// optional signed webhook POST) and, by its action, throttles the client with a
// time-boxed limit override or disables it. A client token_spike cannot judge yet,
// for lack of history, at most gets an info alert, and no action.
//
// Alerts are de-duplicated in Postgres (one per rule, client and hour for
// token_spike, one per new network for new_source_ip), so every control-plane replica
// may run a Detector: only the one that records the alert acts on it.
package anomaly

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/portcullis-gw/portcullis/controlplane/internal/alerting"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/shared/alerts"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// Defaults of Options.
const (
	DefaultInterval = 5 * time.Second
	// maxNovelNetworks is the most new networks one check handles; the rest wait for
	// the next.
	maxNovelNetworks = 500
)

// Alert kinds of the rules, on PC_ALERTS.
const (
	KindTokenSpike  = store.RuleTokenSpike
	KindNewSourceIP = store.RuleNewSourceIP
)

// SetBy is the set_by of the overrides the detector sets.
const SetBy = "anomaly"

// Options configures a Detector. Store and Alerts are required.
type Options struct {
	Store *store.Store
	// Alerts records, publishes on PC_ALERTS and posts the alerts; a rule's
	// webhook_url replaces its default webhook.
	Alerts *alerting.Alerter
	// Notify is called after the detector changed the policy (an override, a disabled
	// client), to publish a new snapshot at once. It must not block long.
	Notify func()
	// Interval is how often the rules are checked.
	Interval time.Duration
	Log      *slog.Logger
	Now      func() time.Time
}

// Detector checks the anomaly rules periodically. Run runs once. Its webhook
// deliveries belong to Options.Alerts.
type Detector struct {
	o Options
}

// New returns a Detector; Run starts it.
func New(o Options) *Detector {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Notify == nil {
		o.Notify = func() {}
	}
	return &Detector{o: o}
}

// Run checks the rules every Interval until ctx ends.
func (d *Detector) Run(ctx context.Context) error {
	t := time.NewTicker(d.o.Interval)
	defer t.Stop()
	for {
		if err := d.Check(ctx); err != nil && ctx.Err() == nil {
			d.o.Log.Warn("anomaly check failed; retrying at the next one", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Check runs every enabled rule once.
func (d *Detector) Check(ctx context.Context) error {
	rules, err := d.o.Store.EnabledAnomalyRules(ctx)
	if err != nil {
		return err
	}
	// The new networks are handled (and cleared) whether or not a rule watches them,
	// so that enabling a rule later does not alert on old ones.
	nets, err := d.o.Store.NovelNetworks(ctx, maxNovelNetworks)
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range rules {
		switch r.Kind {
		case store.RuleTokenSpike:
			errs = append(errs, d.tokenSpike(ctx, r))
		case store.RuleNewSourceIP:
			errs = append(errs, d.newSourceIP(ctx, r, nets))
		case store.RuleFlagRate:
			errs = append(errs, d.flagRate(ctx, r))
		}
	}
	for _, n := range nets {
		errs = append(errs, d.o.Store.ClearNovelNetwork(ctx, n))
	}
	return errors.Join(errs...)
}

// tokenSpike fires r for each client with an established pattern (see established)
// whose tokens of the last hour exceed r.Factor × its baseline, floored at
// r.MinBaselineTokens, and throttles it to throttleTokensPerHour. A client without
// that history is not judged: when its last hour exceeds its tier's fair share (see
// fairShare) it gets an info alert, with no action, one per hour.
func (d *Detector) tokenSpike(ctx context.Context, r store.AnomalyRule) error {
	now := d.o.Now().UTC()
	clients, err := d.o.Store.RecentTokens(ctx, now, r.BaselineDays)
	if err != nil {
		return err
	}
	hour := now.Truncate(time.Hour).Format(time.RFC3339)
	var errs []error
	for _, c := range clients {
		share := fairShare(r, c.TierTokensPerHour)
		f := firing{rule: r, client: c.ClientID, tenant: c.TenantID, details: map[string]any{
			"tokens_last_hour": math.Round(c.LastHour), "baseline_days": r.BaselineDays,
			"history_hours": c.HistoryHours, "history_days": c.HistoryDays,
			"min_history_hours": r.MinHistoryHours, "min_history_days": r.MinHistoryDays,
			"fair_share_tokens_per_hour": math.Round(share), "tier_tokens_per_hour": c.TierTokensPerHour,
		}}
		if established(r, c) {
			baseline := math.Max(c.Baseline, float64(r.MinBaselineTokens))
			if c.LastHour <= r.Factor*baseline {
				continue
			}
			f.dedup, f.throttle = hour, throttleTokensPerHour(r, baseline, c.TierTokensPerHour)
			f.message = fmt.Sprintf("client %s used %.0f tokens in the last hour, %.1f× its baseline of %.0f per hour (rule %s fires above %g×)",
				c.ClientID, c.LastHour, c.LastHour/baseline, baseline, r.Name, r.Factor)
			f.details["baseline_tokens_per_hour"], f.details["mean_hourly_tokens"] = math.Round(baseline), math.Round(c.Baseline)
			f.details["factor"] = r.Factor
		} else {
			if share == 0 || c.LastHour <= share {
				continue
			}
			f.dedup, f.notice = hour+" unestablished", true
			f.message = fmt.Sprintf("client %s used %.0f tokens in the last hour, above its fair share of %.0f per hour; "+
				"with %d hours of usage on %d days it is too new for rule %s (which needs %d hours on %d days) to judge, so it is not throttled",
				c.ClientID, c.LastHour, share, c.HistoryHours, c.HistoryDays, r.Name, r.MinHistoryHours, r.MinHistoryDays)
		}
		errs = append(errs, d.fire(ctx, f))
	}
	return errors.Join(errs...)
}

// established reports whether c has the history r needs to judge a spike: within
// the baseline window, at least r.MinHistoryHours hours with tokens, on at least
// r.MinHistoryDays distinct UTC days. A spike is a departure from an established
// pattern; a new client, or one back after a long pause, has none yet, and judging
// it against min_baseline_tokens alone would throttle ordinary first use.
func established(r store.AnomalyRule, c store.ClientTokens) bool {
	return c.HistoryHours >= r.MinHistoryHours && c.HistoryDays >= r.MinHistoryDays
}

// fairShare is the tokens per hour that a token_spike throttle of rule r always
// leaves a client whose tier allows tierTokensPerHour, and above which a client
// without an established pattern gets an info alert:
//
//	fair_share = min(tier tokens_per_hour / factor, factor × min_baseline_tokens)
//
// The first term bounds how hard a throttle can cut: at most factor-fold below the
// tier's own limit, the same ratio the rule uses to tell a spike from normal use. The
// second keeps a very large ("unlimited") tier from lifting the throttle above the
// spike it answers: the rule fires only above factor × baseline ≥ factor ×
// min_baseline_tokens, so the fair share is always below the spike. It is 0 when the
// tier is unknown (a deleted client).
func fairShare(r store.AnomalyRule, tierTokensPerHour int64) float64 {
	if tierTokensPerHour <= 0 {
		return 0
	}
	return math.Min(float64(tierTokensPerHour)/r.Factor, r.Factor*float64(r.MinBaselineTokens))
}

// throttleTokensPerHour is the tokens_per_hour of the override token_spike sets on a
// client with (floored) baseline whose tier allows tierTokensPerHour:
//
//	throttle = min(max(throttle_tokens_per_hour, baseline, fair_share), tier tokens_per_hour)
//
// with throttle_tokens_per_hour 0 when the rule sets none. A throttle never cuts a
// client below its established usage or its fair share, and never raises its limit
// above its tier's. It is at least 1.
func throttleTokensPerHour(r store.AnomalyRule, baseline float64, tierTokensPerHour int64) int64 {
	tph := math.Max(float64(r.ThrottleTokensPerHour), math.Max(baseline, fairShare(r, tierTokensPerHour)))
	if tierTokensPerHour > 0 {
		tph = math.Min(tph, float64(tierTokensPerHour))
	}
	return max(int64(math.Round(tph)), 1)
}

// newSourceIP fires r for each network a client used for the first time in
// store.NetworkMemory.
func (d *Detector) newSourceIP(ctx context.Context, r store.AnomalyRule, nets []store.NovelNetwork) error {
	var errs []error
	for _, n := range nets {
		f := firing{
			rule: r, client: n.ClientID, throttle: cmp.Or(r.ThrottleTokensPerHour, r.MinBaselineTokens),
			dedup:   n.SourceNet + "@" + n.NovelAt.UTC().Format(time.RFC3339Nano),
			message: fmt.Sprintf("client %s called from network %s, which it had not used in the last 7 days", n.ClientID, n.SourceNet),
			details: map[string]any{"source_net": n.SourceNet, "first_seen": n.NovelAt.UTC()},
		}
		errs = append(errs, d.fire(ctx, f))
	}
	return errors.Join(errs...)
}

// flagRate fires r for each client with at least r.MinRequests requests in the
// last hour of which more than r.FlagShare were flagged by the guardrails, once per
// client and UTC hour.
func (d *Detector) flagRate(ctx context.Context, r store.AnomalyRule) error {
	now := d.o.Now().UTC()
	clients, err := d.o.Store.FlagRates(ctx, now.Add(-time.Hour), r.MinRequests)
	if err != nil {
		return err
	}
	hour := now.Truncate(time.Hour).Format(time.RFC3339)
	var errs []error
	for _, c := range clients {
		share := float64(c.Flagged) / float64(c.Requests)
		if share <= r.FlagShare {
			continue
		}
		errs = append(errs, d.fire(ctx, firing{
			rule: r, client: c.ClientID, tenant: c.TenantID, dedup: hour, throttle: cmp.Or(r.ThrottleTokensPerHour, r.MinBaselineTokens),
			message: fmt.Sprintf("client %s had %d of its %d requests in the last hour flagged by the guardrails (%.0f%%; rule %s fires above %.0f%%)",
				c.ClientID, c.Flagged, c.Requests, 100*share, r.Name, 100*r.FlagShare),
			details: map[string]any{"requests": c.Requests, "flagged": c.Flagged, "flag_share": share, "threshold": r.FlagShare},
		}))
	}
	return errors.Join(errs...)
}

// firing is a rule that fired for a client.
type firing struct {
	rule           store.AnomalyRule
	client, tenant string
	dedup          string
	message        string
	details        map[string]any
	throttle       int64 // the throttle's tokens per hour, for action alert_and_throttle
	// notice makes the alert informational: severity info, and no action whatever the
	// rule's.
	notice bool
}

// fire records f's alert and, unless it was raised already, carries out its rule's
// action, publishes it on PC_ALERTS and sends its webhook (the rule's webhook_url, or
// the control plane's).
func (d *Detector) fire(ctx context.Context, f firing) error {
	now := d.o.Now().UTC()
	r := f.rule
	action, severity, level := r.Action, alerts.SeverityWarning, slog.LevelWarn
	switch {
	case f.notice:
		action, severity, level = store.ActionAlert, alerts.SeverityInfo, slog.LevelInfo
	case r.Action != store.ActionAlert:
		severity = alerts.SeverityCritical
	}
	f.details["rule"], f.details["action"] = r.Name, action
	var override policy.LimitOverride
	if action == store.ActionAlertAndThrottle {
		override = policy.LimitOverride{ClientID: f.client, TokensPerHour: max(f.throttle, 1),
			RequestsPerMinute: r.ThrottleRequestsPerMinute,
			ExpiresAt:         now.Add(time.Duration(r.ThrottleMinutes) * time.Minute).Truncate(time.Second),
			Reason:            "anomaly: " + r.Kind, SetBy: SetBy}
		f.details["throttle"] = map[string]any{"tokens_per_hour": override.TokensPerHour,
			"requests_per_minute": override.RequestsPerMinute, "expires_at": override.ExpiresAt}
	}
	al := alerting.Alert{Kind: r.Kind, Severity: severity, Subject: f.client, ClientID: f.client, TenantID: f.tenant,
		Rule: r.Name, DedupKey: f.dedup, Message: f.message, Details: f.details, IDPrefix: "anomaly", WebhookURL: r.WebhookURL}
	row, raised, err := d.o.Alerts.Record(ctx, al)
	if err != nil || !raised {
		return err
	}
	d.o.Log.Log(ctx, level, "anomaly alert", "rule", r.Name, "kind", r.Kind, "client", f.client, "severity", severity,
		"action", action, "alert_id", row.ID)

	var errs []error
	// The change history records the throttle or block as the detector's, with the
	// rule that made it.
	ctx = store.WithActor(ctx, store.Actor{Principal: "anomaly-detector", Kind: "system", Roles: "", Credential: "rule:" + r.Name})
	switch action {
	case store.ActionAlertAndThrottle:
		if _, err := d.o.Store.LimitOverrides().Put(ctx, override); err != nil {
			errs = append(errs, fmt.Errorf("throttle client %s: %w", f.client, err))
		} else {
			d.o.Notify()
		}
	case store.ActionBlock:
		if err := d.disable(ctx, f.client); err != nil {
			errs = append(errs, fmt.Errorf("block client %s: %w", f.client, err))
		} else {
			d.o.Notify()
		}
	}

	if _, err := d.o.Alerts.Notify(ctx, al, row); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// disable turns client off, unless it is off already.
func (d *Detector) disable(ctx context.Context, client string) error {
	coll := d.o.Store.Clients()
	for attempt := 0; ; attempt++ {
		rec, err := coll.Get(ctx, client)
		if err != nil {
			return err
		}
		if !rec.Entity.Enabled {
			return nil
		}
		rec.Entity.Enabled = false
		_, err = coll.Update(ctx, client, rec.Revision, rec.Entity)
		if !errors.Is(err, store.ErrStale) || attempt == 2 {
			return err
		}
	}
}
