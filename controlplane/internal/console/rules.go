package console

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/controlplane/internal/adminauth"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
)

// registerRules serves the anomaly rule pages under g.
func (c *Console) registerRules(g *echo.Group) {
	g.GET("/alerts/rules", c.rules)
	g.POST("/alerts/rules", c.createRule)
	g.GET("/alerts/rules/:name", c.rule)
	g.POST("/alerts/rules/:name", c.saveRule)
}

// The settings of an anomaly rule's form; a number left empty takes the admin API's
// default. The webhook URL is apart: the page never shows its path, which may hold
// a secret.
var (
	ruleBasics = fieldGroup{"Rule", []formField{
		{Name: "kind", Label: "Kind", Kind: "select", Options: options(store.RuleKinds)},
		{Name: "action", Label: "Action", Kind: "select", Options: options(store.RuleActions)},
		{Name: "enabled", Label: "Enabled", Kind: "check"},
	}}
	ruleThresholds = fieldGroup{"Threshold", []formField{
		{Name: "factor", Label: "Factor", Kind: "decimal", Hint: "token_spike: the last hour's tokens over the baseline that fire it (more than 1)."},
		{Name: "baseline_days", Label: "Baseline days", Kind: "number", Hint: "token_spike: the days the baseline averages (1 to 90)."},
		{Name: "min_baseline_tokens", Label: "Min baseline tokens", Kind: "number", Hint: "token_spike: the baseline below which it does not judge."},
		{Name: "min_history_hours", Label: "Min history hours", Kind: "number", Hint: "token_spike: the hours with tokens a client needs in the baseline window."},
		{Name: "min_history_days", Label: "Min history days", Kind: "number", Hint: "token_spike: the distinct UTC days those hours span."},
		{Name: "flag_share", Label: "Flag share", Kind: "decimal", Hint: "flag_rate: the share of an hour's requests flagged above which it fires (0 to 1)."},
		{Name: "min_requests", Label: "Min requests", Kind: "number", Hint: "flag_rate: the requests in the hour a client needs."},
	}}
	ruleThrottle = fieldGroup{"Throttle (alert_and_throttle)", []formField{
		{Name: "throttle_tokens_per_hour", Label: "Tokens per hour", Kind: "number", Hint: "0: the client's baseline or fair share."},
		{Name: "throttle_requests_per_minute", Label: "Requests per minute", Kind: "number", Hint: "0: the tier's."},
		{Name: "throttle_minutes", Label: "Minutes", Kind: "number", Hint: "How long the throttle lasts (1 to 43200)."},
	}}
	ruleGroups = []fieldGroup{ruleBasics, ruleThresholds, ruleThrottle}
	ruleNames  = slices.Concat(fieldNames(ruleGroups...), []string{"webhook_url"})
)

func options(values []string) []option {
	out := make([]option, len(values))
	for i, v := range values {
		out[i] = option{v, v}
	}
	return out
}

// ruleRow is one rule on the list page.
type ruleRow struct {
	Rule    store.AnomalyRule
	Params  string
	Webhook string
}

func newRuleRow(r store.AnomalyRule) ruleRow {
	return ruleRow{Rule: r, Params: ruleParams(r), Webhook: redactedURL(r.WebhookURL)}
}

// rules serves the anomaly rules, with the create form for those who may write.
func (c *Console) rules(ec echo.Context) error {
	return c.rulesPage(ec, http.StatusOK, map[string]string{"enabled": "true"}, nil, "")
}

func (c *Console) rulesPage(ec echo.Context, status int, form, errs map[string]string, msg string) error {
	v := viewerOf(ec)
	if !v.id.Can(adminauth.AnomalyRulesRead) {
		return c.forbidden(ec, adminauth.AnomalyRulesRead)
	}
	rules, err := all(ec.Request().Context(), c.st.AnomalyRules())
	if err != nil {
		return err
	}
	rows := make([]ruleRow, len(rules))
	for i, r := range rules {
		rows[i] = newRuleRow(r)
	}
	data := map[string]any{"Items": rows, "Groups": views(ruleGroups, form, errs), "CanWrite": v.id.Can(adminauth.AnomalyRulesWrite)}
	return c.render(ec, status, "rules", page{Title: "Alerts", Data: data, Form: form, Errors: errs, Error: msg})
}

// createRule creates an anomaly rule through the admin API; fields left empty take
// its defaults.
func (c *Console) createRule(ec echo.Context) error {
	form := formValues(ec, slices.Concat([]string{"name"}, ruleNames)...)
	body, errs := parseRule(form, false)
	body["name"] = form["name"]
	if len(errs) > 0 {
		return c.rulesPage(ec, http.StatusUnprocessableEntity, form, errs, "Some fields need attention.")
	}
	res, err := c.call(ec, http.MethodPost, "/anomaly-rules", body)
	if err != nil {
		return err
	}
	if res.status != http.StatusCreated {
		errs, msg := formErrors(res, slices.Concat([]string{"name"}, ruleNames))
		return c.rulesPage(ec, res.status, form, errs, msg)
	}
	return ec.Redirect(http.StatusSeeOther, Prefix+"/alerts/rules/"+url.PathEscape(form["name"])+"?done=rule-created")
}

// rule serves one anomaly rule, with the form to change it for those who may.
func (c *Console) rule(ec echo.Context) error {
	return c.rulePage(ec, http.StatusOK, nil, nil, "")
}

// rulePage renders the rule's page; form nil shows the rule as it is, at its
// revision.
func (c *Console) rulePage(ec echo.Context, status int, form, errs map[string]string, msg string) error {
	v := viewerOf(ec)
	if !v.id.Can(adminauth.AnomalyRulesRead) {
		return c.forbidden(ec, adminauth.AnomalyRulesRead)
	}
	name := ec.Param("name")
	rec, err := c.st.AnomalyRules().Get(ec.Request().Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		return c.fail(ec, v, http.StatusNotFound, "Not found", "There is no anomaly rule "+strconv.Quote(name)+".")
	}
	if err != nil {
		return err
	}
	if form == nil {
		form = ruleValues(rec.Entity)
		form["revision"] = strconv.FormatInt(rec.Revision, 10)
	}
	data := map[string]any{"Row": newRuleRow(rec.Entity), "Revision": rec.Revision, "Groups": views(ruleGroups, form, errs),
		"CanWrite": v.id.Can(adminauth.AnomalyRulesWrite)}
	return c.render(ec, status, "rule", page{Title: "Alerts", Data: data, Form: form, Errors: errs, Error: msg})
}

// saveRule changes an anomaly rule through the admin API, if it has not changed
// since the form was loaded (If-Match).
func (c *Console) saveRule(ec echo.Context) error {
	form := formValues(ec, slices.Concat(ruleNames, []string{"webhook_clear", "revision"})...)
	name := ec.Param("name")
	body, errs := parseRule(form, true)
	if len(errs) > 0 {
		return c.rulePage(ec, http.StatusUnprocessableEntity, form, errs, "Some fields need attention.")
	}
	res, err := c.call(ec, http.MethodPatch, "/anomaly-rules/"+url.PathEscape(name), body, "If-Match", ifMatch(form["revision"]))
	if err != nil {
		return err
	}
	switch res.status {
	case http.StatusOK:
		return ec.Redirect(http.StatusSeeOther, Prefix+"/alerts/rules/"+url.PathEscape(name)+"?done=rule-saved")
	case http.StatusPreconditionFailed:
		current := map[string]string{}
		if rec, err := c.st.AnomalyRules().Get(ec.Request().Context(), name); err == nil {
			current = ruleValues(rec.Entity)
		}
		return c.rulePage(ec, res.status, nil, nil, changedMsg("rule", form, current))
	case http.StatusUnprocessableEntity:
		errs, msg := formErrors(res, ruleNames)
		return c.rulePage(ec, res.status, form, errs, msg)
	}
	_, msg := res.fieldErrors()
	return c.fail(ec, viewerOf(ec), res.status, "Not saved", msg)
}

// ruleValues are r's settings as the form shows them, the webhook URL left out.
func ruleValues(r store.AnomalyRule) map[string]string {
	return map[string]string{
		"kind":                         r.Kind,
		"action":                       r.Action,
		"enabled":                      strconv.FormatBool(r.Enabled),
		"factor":                       strconv.FormatFloat(r.Factor, 'g', -1, 64),
		"baseline_days":                strconv.Itoa(r.BaselineDays),
		"min_baseline_tokens":          strconv.FormatInt(r.MinBaselineTokens, 10),
		"min_history_hours":            strconv.Itoa(r.MinHistoryHours),
		"min_history_days":             strconv.Itoa(r.MinHistoryDays),
		"flag_share":                   strconv.FormatFloat(r.FlagShare, 'g', -1, 64),
		"min_requests":                 strconv.Itoa(r.MinRequests),
		"throttle_tokens_per_hour":     strconv.FormatInt(r.ThrottleTokensPerHour, 10),
		"throttle_requests_per_minute": strconv.FormatInt(r.ThrottleRequestsPerMinute, 10),
		"throttle_minutes":             strconv.Itoa(r.ThrottleMinutes),
	}
}

// parseRule reads the form into the admin API's body, with the numbers that are
// not numbers by field. A number left empty is null in a change (the default) and
// left out of a new rule. The webhook URL is set when given, and cleared in a
// change when webhook_clear is ticked.
func parseRule(form map[string]string, change bool) (map[string]any, map[string]string) {
	body := map[string]any{"kind": form["kind"], "action": form["action"], "enabled": form["enabled"] == "true"}
	errs := map[string]string{}
	for _, g := range []fieldGroup{ruleThresholds, ruleThrottle} {
		for _, f := range g.Fields {
			s := form[f.Name]
			if s == "" {
				if change {
					body[f.Name] = nil
				}
				continue
			}
			ok := true
			if f.Kind == "decimal" {
				body[f.Name], ok = parseNumber(s)
			} else {
				var err error
				body[f.Name], err = strconv.ParseInt(s, 10, 64)
				ok = err == nil
			}
			if !ok {
				errs[f.Name] = "must be a number"
			}
		}
	}
	switch {
	case form["webhook_url"] != "":
		body["webhook_url"] = form["webhook_url"]
	case change && form["webhook_clear"] == "true":
		body["webhook_url"] = ""
	}
	return body, errs
}

// ruleParams says in a line what fires a rule of r's kind.
func ruleParams(r store.AnomalyRule) string {
	switch r.Kind {
	case store.RuleTokenSpike:
		return fmt.Sprintf("an hour's tokens over %g × the %d-day baseline (baseline at least %d tokens; history %d h on %d days)",
			r.Factor, r.BaselineDays, r.MinBaselineTokens, r.MinHistoryHours, r.MinHistoryDays)
	case store.RuleFlagRate:
		return fmt.Sprintf("over %g%% of an hour's requests flagged (at least %d requests)", r.FlagShare*100, r.MinRequests)
	case store.RuleNewSourceIP:
		return fmt.Sprintf("a source network the client has not used for %d days", int(store.NetworkMemory.Hours()/24))
	}
	return ""
}

// redactedURL is u with only its scheme and host shown: a webhook's path or query
// may hold a secret.
func redactedURL(u string) string {
	if u == "" {
		return ""
	}
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return "(set)"
	}
	return p.Scheme + "://" + p.Host + "/…"
}
