package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/controlplane/internal/adminauth"
	"github.com/portcullis-gw/portcullis/controlplane/internal/health"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
)

// overviewWindow is how far back the overview looks.
const overviewWindow = 24 * time.Hour

// topClients is how many clients the overview ranks by tokens.
const topClients = 10

// liveAlerts is how many open alerts the overview lists.
const liveAlerts = 5

// regionTraffic is one region's last 24 hours on the overview.
type regionTraffic struct {
	Region                    string
	Requests, Errors, Refused int64
	Tokens, CostUSDMicros     int64
	PerSecond                 float64 // requests per second over the window
	ErrorRate, RefusedRate    float64
	P50, P95                  float64 // gateway latency, ms, estimated from the rollup's buckets
	TokensPerHour, CostPerH   float64
	Latency                   []int64
	Gateway                   bool // errors and latency are known (from the whole gateway's rollup)
}

// chart is what console.js draws with uPlot: one x axis of unix seconds and a series
// per label. A page shows the same numbers in a table, for readers without JS.
type chart struct {
	Title  string   `json:"title"`
	Unit   string   `json:"unit"`
	X      []int64  `json:"x"`
	Series []series `json:"series"`
}

type series struct {
	Label  string    `json:"label"`
	Values []float64 `json:"values"`
}

// hours are the whole UTC hours from from to to, as unix seconds.
func hours(from, to time.Time) []int64 {
	var out []int64
	for h := from; h.Before(to); h = h.Add(time.Hour) {
		out = append(out, h.Unix())
	}
	return out
}

// hourly lays values by region and hour out on x, a series per region, with zeros
// for hours without a row.
func hourly(x []int64, regions []string, value map[string]map[int64]float64) []series {
	out := make([]series, 0, len(regions))
	for _, r := range regions {
		s := series{Label: r, Values: make([]float64, len(x))}
		for i, h := range x {
			s.Values[i] = value[r][h]
		}
		out = append(out, s)
	}
	return out
}

// overview serves the console's first page: the last 24 hours per region (requests,
// errors, latency, tokens and cost, from the archive's rollups), the top clients by
// tokens, and the live part (open alerts and breaker states), which htmx refreshes.
func (c *Console) overview(ec echo.Context) error {
	v, ctx := viewerOf(ec), ec.Request().Context()
	data := map[string]any{}
	if sctx, ok := scope(ctx, v, adminauth.TenantsRead); ok {
		n, err := c.st.Tenants().Count(sctx, store.Filter{})
		if err != nil {
			return err
		}
		data["Tenants"] = strconv.Itoa(n)
	}
	if sctx, ok := scope(ctx, v, adminauth.ClientsRead); ok {
		n, err := c.st.Clients().Count(sctx, store.Filter{})
		if err != nil {
			return err
		}
		off, err := c.st.Clients().Count(sctx, store.Filter{Equals: map[string]string{"enabled": "false"}})
		if err != nil {
			return err
		}
		data["Clients"], data["Disabled"] = strconv.Itoa(n), strconv.Itoa(off)
	}
	if err := c.traffic(ec, data); err != nil {
		return err
	}
	live, err := c.live(ec)
	if err != nil {
		return err
	}
	data["Live"] = live
	return c.render(ec, http.StatusOK, "overview", page{Title: "Overview", Data: data})
}

// traffic adds the last 24 hours per region and the top clients to data, for a
// viewer who may read usage: the whole gateway's traffic (with errors and latency)
// to one who may read all of it, the own tenants' usage to a tenant admin.
func (c *Console) traffic(ec echo.Context, data map[string]any) error {
	v, ctx := viewerOf(ec), ec.Request().Context()
	all, _, ok := v.id.Allows(adminauth.UsageRead)
	if !ok {
		return nil
	}
	sctx, _ := scope(ctx, v, adminauth.UsageRead)
	now := time.Now().UTC()
	to := now.Truncate(time.Hour).Add(time.Hour)
	from := to.Add(-overviewWindow)
	x := hours(from, to)
	// The rates are over the time the rows cover: the 23 whole hours and the one
	// under way.
	secs := now.Sub(from).Seconds()
	byRegion := map[string]*regionTraffic{}
	var regions []string
	requests, tokens := map[string]map[int64]float64{}, map[string]map[int64]float64{}
	add := func(region string, hour time.Time, req, tok int64) *regionTraffic {
		r := byRegion[region]
		if r == nil {
			r = &regionTraffic{Region: region, Gateway: all, Latency: make([]int64, len(store.LatencyBoundsMS)+1)}
			byRegion[region], requests[region], tokens[region] = r, map[int64]float64{}, map[int64]float64{}
			regions = append(regions, region)
		}
		r.Requests += req
		r.Tokens += tok
		requests[region][hour.Unix()] += float64(req)
		tokens[region][hour.Unix()] += float64(tok)
		return r
	}
	if all {
		rows, err := c.st.Traffic(ctx, from, to)
		if err != nil {
			return err
		}
		for _, t := range rows {
			r := add(t.Region, t.Hour, t.Requests, t.TokensIn+t.TokensOut)
			r.Errors += t.Errors
			r.Refused += t.Refused
			r.CostUSDMicros += t.CostUSDMicros
			for i, n := range t.Latency {
				if i < len(r.Latency) {
					r.Latency[i] += n
				}
			}
		}
	} else {
		rows, err := c.st.UsageByHour(sctx, from, to, "", "")
		if err != nil {
			return err
		}
		for _, u := range rows {
			r := add(u.Region, u.Hour, u.Requests, u.TokensIn+u.TokensOut)
			r.CostUSDMicros += u.CostUSDMicros
		}
	}
	slices.Sort(regions)
	list := make([]regionTraffic, 0, len(regions))
	for _, name := range regions {
		r := byRegion[name]
		hrs := secs / 3600
		r.PerSecond = float64(r.Requests) / secs
		r.ErrorRate, r.RefusedRate = ratio(r.Errors, r.Requests), ratio(r.Refused, r.Requests)
		r.P50, r.P95 = store.LatencyQuantile(r.Latency, 0.5), store.LatencyQuantile(r.Latency, 0.95)
		r.TokensPerHour, r.CostPerH = float64(r.Tokens)/hrs, float64(r.CostUSDMicros)/hrs
		list = append(list, *r)
	}
	top, err := c.st.TopUsage(sctx, "client", from, to, topClients)
	if err != nil {
		return err
	}
	data["Regions"], data["TopClients"], data["ShowTraffic"], data["Gateway"] = list, top, true, all
	data["RequestsChart"] = chart{Title: "Requests per hour", Unit: "requests", X: x, Series: hourly(x, regions, requests)}
	data["TokensChart"] = chart{Title: "Tokens per hour", Unit: "tokens", X: x, Series: hourly(x, regions, tokens)}
	return nil
}

// liveData is the part of the overview that refreshes itself: open alerts and the
// deployments' breakers.
type liveData struct {
	ShowAlerts bool
	OpenAlerts int
	Alerts     []store.Alert
	Breakers   breakersData
	At         time.Time
}

// live reads the overview's live part.
func (c *Console) live(ec echo.Context) (liveData, error) {
	v := viewerOf(ec)
	d := liveData{At: time.Now().UTC()}
	if v.id.Can(adminauth.AlertsRead) {
		ctx := ec.Request().Context()
		n, err := c.st.OpenAlerts(ctx)
		if err != nil {
			return d, err
		}
		open, err := c.st.FilterAlerts(ctx, store.AlertFilter{Open: true, Limit: liveAlerts})
		if err != nil {
			return d, err
		}
		d.ShowAlerts, d.OpenAlerts, d.Alerts = true, n, open
	}
	if v.id.Can(adminauth.HealthRead) {
		d.Breakers = c.breakers(ec, false)
	}
	return d, nil
}

// fleet is the deployments' health across the workers, from the admin API.
func (c *Console) fleet(ec echo.Context) (health.Fleet, error) {
	res, err := c.call(ec, http.MethodGet, "/deployments/health", nil)
	if err != nil {
		return health.Fleet{}, err
	}
	var body struct {
		Data    []health.DeploymentHealth `json:"data"`
		Workers int                       `json:"workers"`
	}
	if res.status != http.StatusOK {
		return health.Fleet{}, fmt.Errorf("deployment health: the admin API answered %d: %s", res.status, res.problem().Message)
	}
	if err := json.Unmarshal(res.body, &body); err != nil {
		return health.Fleet{}, fmt.Errorf("deployment health: %w", err)
	}
	return health.Fleet{Deployments: body.Data, Workers: body.Workers}, nil
}

// liveOverview serves the overview's live part alone, for htmx to swap in.
func (c *Console) liveOverview(ec echo.Context) error {
	d, err := c.live(ec)
	if err != nil {
		return err
	}
	return c.fragment(ec, "overview", "live", d)
}

// liveTraffic serves the overview's traffic section alone, for htmx to swap in.
func (c *Console) liveTraffic(ec echo.Context) error {
	data := map[string]any{}
	if err := c.traffic(ec, data); err != nil {
		return err
	}
	return c.fragment(ec, "overview", "traffic", data)
}

// fragment renders the template name of page alone, without the page around it.
func (c *Console) fragment(ec echo.Context, pageName, name string, data any) error {
	t, ok := c.pages[pageName]
	if !ok {
		return echo.ErrNotFound
	}
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, name, data); err != nil {
		return err
	}
	return ec.HTMLBlob(http.StatusOK, b.Bytes())
}
