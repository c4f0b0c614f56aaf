package console

import (
	"cmp"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/controlplane/internal/adminapi"
	"github.com/portcullis-gw/portcullis/controlplane/internal/adminauth"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
)

// usageRanges are the periods the usage page offers, by their query value.
var usageRanges = []struct {
	Value, Label string
	d            time.Duration
}{
	{"24h", "Last 24 hours", 24 * time.Hour},
	{"7d", "Last 7 days", 7 * 24 * time.Hour},
	{"30d", "Last 30 days", 30 * 24 * time.Hour},
}

// usageRows is how many rows the usage table shows; the CSV has them all.
const usageRows = 100

// usage serves showback: requests, tokens and cost by tenant, client or model over a
// period, most tokens first, with hourly charts per region and the CSV download
// (the admin API's report, fetched by the browser with its session). A tenant admin
// sees its tenants' rows only.
func (c *Console) usage(ec echo.Context) error {
	v := viewerOf(ec)
	all, _, _ := v.id.Allows(adminauth.UsageRead)
	sctx, ok := scope(ec.Request().Context(), v, adminauth.UsageRead)
	if !ok {
		return c.forbidden(ec, adminauth.UsageRead)
	}
	group := ec.QueryParam("group")
	if !slices.Contains(store.UsageGroups, group) {
		group = "tenant"
	}
	rng := usageRanges[0]
	for _, r := range usageRanges {
		if r.Value == ec.QueryParam("range") {
			rng = r
		}
	}
	key := strings.TrimSpace(ec.QueryParam("key"))
	to := time.Now().UTC().Truncate(time.Hour).Add(time.Hour)
	from := to.Add(-rng.d)

	rows, err := c.st.Usage(sctx, group, from, to)
	if err != nil {
		return err
	}
	var total store.UsageRow
	for _, r := range rows {
		total.Requests += r.Requests
		total.TokensIn += r.TokensIn
		total.TokensOut += r.TokensOut
		total.CostUSDMicros += r.CostUSDMicros
	}
	if key != "" {
		rows = slices.DeleteFunc(rows, func(r store.UsageRow) bool { return !strings.Contains(strings.ToLower(r.Key), strings.ToLower(key)) })
	}
	slices.SortFunc(rows, func(a, b store.UsageRow) int {
		return cmp.Or(cmp.Compare(b.TokensIn+b.TokensOut, a.TokensIn+a.TokensOut), cmp.Compare(a.Key, b.Key))
	})
	shown := rows[:min(len(rows), usageRows)]

	// The charts narrow to the one row the search names exactly, if it does.
	exact := ""
	if key != "" && (len(rows) == 1 || (len(rows) > 0 && rows[0].Key == key)) {
		exact = rows[0].Key
	}
	var byHour []store.UsageHour
	if key == "" || exact != "" { // a search that names no one row charts nothing
		if byHour, err = c.st.UsageByHour(sctx, from, to, group, exact); err != nil {
			return err
		}
	}
	x := hours(from, to)
	var regions []string
	tokens, cost := map[string]map[int64]float64{}, map[string]map[int64]float64{}
	for _, u := range byHour {
		if tokens[u.Region] == nil {
			regions = append(regions, u.Region)
			tokens[u.Region], cost[u.Region] = map[int64]float64{}, map[int64]float64{}
		}
		tokens[u.Region][u.Hour.Unix()] += float64(u.TokensIn + u.TokensOut)
		cost[u.Region][u.Hour.Unix()] += float64(u.CostUSDMicros) / 1e6
	}
	slices.Sort(regions)
	csv := url.Values{"group_by": {group}, "from": {from.Format(time.RFC3339)}, "to": {to.Format(time.RFC3339)}, "format": {"csv"}}
	data := map[string]any{
		"Group": group, "Groups": store.UsageGroups, "Range": rng.Value, "Ranges": usageRanges, "Key": key,
		"Items": shown, "Matching": len(rows), "Total": total, "From": from, "To": to, "ChartKey": exact,
		"CSV":         adminapi.Prefix + "/usage?" + csv.Encode(),
		"TokensChart": chart{Title: "Tokens per hour", Unit: "tokens", X: x, Series: hourly(x, regions, tokens)},
		"CostChart":   chart{Title: "Cost per hour", Unit: "USD", X: x, Series: hourly(x, regions, cost)},
		"Scoped":      !all,
	}
	return c.render(ec, http.StatusOK, "usage", page{Title: "Usage", Data: data})
}
