package anomaly_test

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/controlplane/internal/anomaly"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/shared/alerts"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// usageHours gives client tokens in each of hours (whole UTC hours), split over two
// regions so that an hour has several rollup rows: it must still count once.
func usageHours(t *testing.T, st *store.Store, client string, tokens int64, hours ...time.Time) {
	t.Helper()
	var rows []store.HourlyUsage
	for _, h := range hours {
		for _, region := range []string{"eu", "us"} {
			n := tokens / 2
			if region == "us" {
				n = tokens - tokens/2
			}
			rows = append(rows, store.HourlyUsage{Hour: h, Region: region, TenantID: "acme", ClientID: client,
				Model: "gpt-4o-mini", Requests: 1, TokensIn: n / 2, TokensOut: n - n/2})
		}
	}
	if err := st.AddHourlyUsage(context.Background(), rows); err != nil {
		t.Fatal(err)
	}
}

// dayHours returns the first n whole hours of the UTC day that starts days before
// now's.
func dayHours(now time.Time, days, n int) []time.Time {
	start := now.UTC().Truncate(24 * time.Hour).Add(-time.Duration(days) * 24 * time.Hour)
	out := make([]time.Time, n)
	for i := range out {
		out[i] = start.Add(time.Duration(i) * time.Hour)
	}
	return out
}

// TestTokenSpikeNeedsEstablishedHistory: token_spike throttles (or blocks) only a
// client with at least min_history_hours hours with tokens on min_history_days UTC
// days of its baseline window; a client short of that gets at most one info alert an
// hour when its last hour is above its fair share, and no action. An established
// client's throttle is max(throttle_tokens_per_hour, baseline, fair share), at most
// its tier's limit, where fair share = min(tier / factor, factor ×
// min_baseline_tokens). The rule is the migration's (factor 5, 7 days, floor 10,000,
// 24 hours on 2 days) unless a case patches it.
func TestTokenSpikeNeedsEstablishedHistory(t *testing.T) {
	// The UTC days 2 to 6 before today's lie wholly inside the 7-day window, whatever
	// the hour.
	for _, tc := range []struct {
		name    string
		tier    int64                    // the client's tier tokens_per_hour
		rule    func(*store.AnomalyRule) // changes to the seeded token_spike rule
		history func(t *testing.T, st *store.Store, now time.Time)
		spike   int64 // tokens in the current hour
		// want: the alert's severity ("" for none) and the throttle's tokens per hour
		// (0 for none); baseline is the floored baseline the throttle must not go under.
		severity string
		throttle int64
		baseline int64
		disabled bool
	}{
		{
			name: "new client at half its tier", tier: 100_000, spike: 50_000,
			severity: alerts.SeverityInfo, // 50,000 > fair share min(100,000 / 5, 50,000)
		},
		{
			name: "new client above the old threshold", tier: 100_000, spike: 60_000, // the floor's 5 × 10,000
			severity: alerts.SeverityInfo,
		},
		{
			name: "new client below its fair share", tier: 100_000, spike: 15_000,
		},
		{
			name: "new client under a block rule", tier: 100_000, spike: 90_000,
			rule:     func(r *store.AnomalyRule) { r.Action = store.ActionBlock },
			severity: alerts.SeverityInfo,
		},
		{
			name: "24 hours all on one day", tier: 100_000, spike: 60_000,
			history: func(t *testing.T, st *store.Store, now time.Time) {
				usageHours(t, st, "c", 2_000, dayHours(now, 2, 24)...)
			},
			severity: alerts.SeverityInfo,
		},
		{
			name: "10 hours over 3 days", tier: 100_000, spike: 60_000,
			history: func(t *testing.T, st *store.Store, now time.Time) {
				usageHours(t, st, "c", 2_000, dayHours(now, 2, 4)...)
				usageHours(t, st, "c", 2_000, dayHours(now, 3, 3)...)
				usageHours(t, st, "c", 2_000, dayHours(now, 4, 3)...)
			},
			severity: alerts.SeverityInfo,
		},
		{
			name: "23 hours over 2 days", tier: 100_000, spike: 60_000,
			history: func(t *testing.T, st *store.Store, now time.Time) {
				usageHours(t, st, "c", 2_000, dayHours(now, 2, 12)...)
				usageHours(t, st, "c", 2_000, dayHours(now, 3, 11)...)
			},
			severity: alerts.SeverityInfo,
		},
		{
			name: "a week of history, all before the window", tier: 100_000, spike: 60_000,
			history: func(t *testing.T, st *store.Store, now time.Time) {
				for d := 9; d < 16; d++ {
					usageHours(t, st, "c", 2_000, dayHours(now, d, 24)...)
				}
			},
			severity: alerts.SeverityInfo,
		},
		{
			name: "24 hours over 2 days", tier: 100_000, spike: 60_000,
			history: func(t *testing.T, st *store.Store, now time.Time) {
				usageHours(t, st, "c", 2_000, dayHours(now, 2, 12)...)
				usageHours(t, st, "c", 2_000, dayHours(now, 3, 12)...)
			},
			// baseline floored at 10,000; fair share 20,000.
			severity: alerts.SeverityCritical, throttle: 20_000, baseline: 10_000,
		},
		{
			name: "established, 10x jump", tier: 100_000, spike: 100_000,
			history: func(t *testing.T, st *store.Store, now time.Time) {
				history(t, st, "c", now, 7, 10_000)
			},
			severity: alerts.SeverityCritical, throttle: 20_000, baseline: 10_000,
		},
		{
			name: "established, 10x jump, large tier", tier: 10_000_000, spike: 200_000,
			history: func(t *testing.T, st *store.Store, now time.Time) {
				history(t, st, "c", now, 7, 20_000)
			},
			// fair share min(2,000,000, 5 × 10,000) = 50,000.
			severity: alerts.SeverityCritical, throttle: 50_000, baseline: 20_000,
		},
		{
			name: "established, baseline above the fair share", tier: 1_000_000, spike: 600_000,
			history: func(t *testing.T, st *store.Store, now time.Time) {
				history(t, st, "c", now, 7, 60_000)
			},
			severity: alerts.SeverityCritical, throttle: 60_000, baseline: 60_000,
		},
		{
			name: "established, not a spike", tier: 1_000_000, spike: 250_000,
			history: func(t *testing.T, st *store.Store, now time.Time) {
				history(t, st, "c", now, 7, 60_000)
			},
		},
		{
			name: "rule throttle below the fair share", tier: 100_000, spike: 100_000,
			rule: func(r *store.AnomalyRule) { r.ThrottleTokensPerHour = 5_000 },
			history: func(t *testing.T, st *store.Store, now time.Time) {
				history(t, st, "c", now, 7, 10_000)
			},
			severity: alerts.SeverityCritical, throttle: 20_000, baseline: 10_000,
		},
		{
			name: "rule throttle above the tier", tier: 100_000, spike: 100_000,
			rule: func(r *store.AnomalyRule) { r.ThrottleTokensPerHour = 500_000 },
			history: func(t *testing.T, st *store.Store, now time.Time) {
				history(t, st, "c", now, 7, 10_000)
			},
			severity: alerts.SeverityCritical, throttle: 100_000, baseline: 10_000,
		},
		{
			name: "no history required", tier: 100_000, spike: 60_000,
			rule:     func(r *store.AnomalyRule) { r.MinHistoryHours, r.MinHistoryDays = 0, 0 },
			severity: alerts.SeverityCritical, throttle: 20_000, baseline: 10_000,
		},
		{
			name: "established client blocked", tier: 100_000, spike: 100_000,
			rule: func(r *store.AnomalyRule) { r.Action = store.ActionBlock },
			history: func(t *testing.T, st *store.Store, now time.Time) {
				history(t, st, "c", now, 7, 10_000)
			},
			severity: alerts.SeverityCritical, disabled: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			now := time.Now().UTC()
			e.pin(now)
			if _, err := e.st.Tiers().Create(ctx, policy.Tier{Name: "t", RequestsPerMinute: 600, TokensPerHour: tc.tier,
				MaxConcurrentRequests: 5, AllowedModels: []string{"gpt-4o-mini"}, AllowedOperations: policy.Operations}); err != nil {
				t.Fatal(err)
			}
			if _, err := e.st.Clients().Create(ctx, policy.Client{ClientID: "c", Tenant: "acme", Tier: "t", Enabled: true}); err != nil {
				t.Fatal(err)
			}
			rule, err := e.st.AnomalyRules().Get(ctx, "token_spike")
			if err != nil {
				t.Fatal(err)
			}
			if tc.rule != nil {
				tc.rule(&rule.Entity)
				if rule, err = e.st.AnomalyRules().Update(ctx, "token_spike", rule.Revision, rule.Entity); err != nil {
					t.Fatal(err)
				}
			}
			if tc.history != nil {
				tc.history(t, e.st, now)
			}
			e.archive(t, "c", "", now, tc.spike/2, tc.spike-tc.spike/2)

			// Several checks within the hour: one alert at most.
			for range 3 {
				if err := e.det.Check(ctx); err != nil {
					t.Fatal(err)
				}
			}
			got := alertsOf(t, e.st, "c", anomaly.KindTokenSpike)
			switch {
			case tc.severity == "" && len(got) != 0:
				t.Fatalf("alerts %+v, want none", got)
			case tc.severity != "" && (len(got) != 1 || got[0].Severity != tc.severity):
				t.Fatalf("alerts %+v, want one %s", got, tc.severity)
			}
			if tc.severity != "" {
				a, err := alerts.Decode(receive(t, e.alerts, "PC_ALERTS message").Data)
				if err != nil || a.Severity != tc.severity || a.Subject != "c" {
					t.Fatalf("PC_ALERTS carries %+v, %v", a, err)
				}
			}

			ov, err := e.st.LimitOverrides().Get(ctx, "c")
			switch {
			case tc.throttle == 0 && !errors.Is(err, store.ErrNotFound):
				t.Fatalf("override %+v, %v; want none", ov.Entity, err)
			case tc.throttle != 0 && err != nil:
				t.Fatalf("no override: %v", err)
			case tc.throttle != 0:
				tph := ov.Entity.TokensPerHour
				share := int64(math.Min(float64(tc.tier)/5, 5*10_000))
				if tph != tc.throttle {
					t.Fatalf("throttle %d tokens per hour, want %d", tph, tc.throttle)
				}
				if tph < tc.baseline || tph < share || tph > tc.tier {
					t.Fatalf("throttle %d: want at least the baseline %d and the fair share %d, at most the tier %d",
						tph, tc.baseline, share, tc.tier)
				}
				// Unless the rule sets a higher throttle, it is below the spike.
				if rule.Entity.ThrottleTokensPerHour == 0 && tph >= tc.spike {
					t.Fatalf("throttle %d, not below the spike of %d", tph, tc.spike)
				}
			}
			if tc.throttle == 0 && !tc.disabled && e.notified.Load() != 0 {
				t.Fatal("the policy publisher was notified, but nothing changed")
			}
			c, err := e.st.Clients().Get(ctx, "c")
			if err != nil || c.Entity.Enabled == tc.disabled {
				t.Fatalf("client %+v, %v; want enabled %v", c.Entity, err, !tc.disabled)
			}
		})
	}
}
