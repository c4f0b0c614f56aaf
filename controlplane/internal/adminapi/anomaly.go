package adminapi

import (
	"fmt"
	"strings"

	"github.com/portcullis-gw/portcullis/controlplane/internal/alerting"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
)

// anomalyRulesPath is the collection of anomaly rules (package anomaly runs them).
const anomalyRulesPath = "anomaly-rules"

// anomalyRules serves the anomaly rules with the generic resource machinery: ETags,
// If-Match, merge patches and pagination like every policy entity.
func (a *API) anomalyRules() *resource[store.AnomalyRule] {
	return newResource(a, anomalyRulesPath, "anomaly rule", a.st.AnomalyRules(), slug,
		func() store.AnomalyRule {
			return store.AnomalyRule{Enabled: true, Factor: 5, BaselineDays: 7, MinBaselineTokens: 10000,
				MinHistoryHours: 24, MinHistoryDays: 2, Action: store.ActionAlert, ThrottleMinutes: 60, FlagShare: 0.2, MinRequests: 20}
		},
		func(rep *report, r *store.AnomalyRule) { validateAnomalyRule(rep, r, a.allowPrivateWebhooks) })
}

// validateAnomalyRule records every problem of r. A webhook_url whose host is a
// private IP address is refused unless allowPrivateWebhooks.
func validateAnomalyRule(rep *report, r *store.AnomalyRule, allowPrivateWebhooks bool) {
	ok, msg := oneOf(r.Kind, store.RuleKinds)
	rep.check("kind", ok, msg)
	ok, msg = oneOf(r.Action, store.RuleActions)
	rep.check("action", ok, msg)
	rep.check("factor", r.Factor > 1 && r.Factor <= 1000, "must be more than 1 and at most 1000")
	rep.check("baseline_days", r.BaselineDays >= 1 && r.BaselineDays <= 90, "must be from 1 to 90")
	rep.check("min_baseline_tokens", r.MinBaselineTokens > 0, "must be a positive integer")
	// The baseline window has baseline_days × 24 hours on at most baseline_days + 1 UTC
	// days: a larger history could never be met. With baseline_days invalid (reported
	// above), the bounds are those of its largest value.
	days := r.BaselineDays
	if days < 1 || days > 90 {
		days = 90
	}
	rep.check("min_history_hours", r.MinHistoryHours >= 0 && r.MinHistoryHours <= days*24,
		fmt.Sprintf("must be from 0 to baseline_days × 24 (%d)", days*24))
	rep.check("min_history_days", r.MinHistoryDays >= 0 && r.MinHistoryDays <= days+1,
		fmt.Sprintf("must be from 0 to baseline_days + 1 (%d)", days+1))
	rep.check("throttle_tokens_per_hour", r.ThrottleTokensPerHour >= 0,
		"must be a positive integer, or 0 (or null) for the client's baseline or fair share")
	rep.check("throttle_requests_per_minute", r.ThrottleRequestsPerMinute >= 0,
		"must be a positive integer, or 0 (or null) to keep the tier's value")
	rep.check("throttle_minutes", r.ThrottleMinutes >= 1 && r.ThrottleMinutes <= 43200,
		"must be from 1 to 43200 (30 days)")
	rep.check("flag_share", r.FlagShare > 0 && r.FlagShare <= 1, "must be more than 0 and at most 1 (the share of a client's requests flagged)")
	rep.check("min_requests", r.MinRequests >= 1 && r.MinRequests <= 1000000, "must be from 1 to 1000000")
	if r.WebhookURL != "" {
		reason := alerting.CheckURL(r.WebhookURL, allowPrivateWebhooks)
		switch {
		case reason == "" && len(r.WebhookURL) > 2048:
			reason = "must be at most 2048 characters"
		case reason != "" && !strings.Contains(reason, "private"):
			reason = "must be an absolute http(s) URL without user info or fragment, at most 2048 characters, or empty for the control plane's alert-webhook-url"
		}
		rep.check("webhook_url", reason == "", reason)
	}
}
