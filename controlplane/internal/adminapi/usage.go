package adminapi

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
)

// usagePath is the showback report over the hourly usage rollup.
const usagePath = "/usage"

// Formats of the usage report.
var usageFormats = []string{"json", "csv"}

func (a *API) registerUsage(g *echo.Group) {
	g.GET(usagePath, a.usage)
}

// usageQuery is a validated usage request.
type usageQuery struct {
	groupBy  string
	from, to time.Time // whole hours
	format   string
}

// usage answers GET /usage?group_by=client|tenant|model&from=&to=[&format=json|csv]:
// requests, tokens and cost summed over every region's hours that overlap [from, to)
// (from is rounded down and to up to whole UTC hours, and the answer says so).
func (a *API) usage(c echo.Context) error {
	q, err := decodeUsageQuery(c)
	if err != nil {
		return err
	}
	rows, err := a.st.Usage(c.Request().Context(), q.groupBy, q.from, q.to)
	if err != nil {
		return err
	}
	keyField := usageKeyField(q.groupBy)
	c.Response().Header().Set("Cache-Control", "no-store")
	if q.format == "csv" {
		return writeUsageCSV(c, q, keyField, rows)
	}
	data := make([]map[string]any, 0, len(rows))
	for _, r := range rows {
		data = append(data, map[string]any{
			keyField: r.Key, "requests": r.Requests, "tokens_in": r.TokensIn, "tokens_out": r.TokensOut,
			"cost_usd": usd(r.CostUSDMicros), "cost_usd_micros": r.CostUSDMicros,
		})
	}
	return c.JSON(http.StatusOK, map[string]any{
		"group_by": q.groupBy, "from": q.from, "to": q.to, "data": data,
	})
}

// writeUsageCSV writes rows as CSV with a header.
func writeUsageCSV(c echo.Context, q usageQuery, keyField string, rows []store.UsageRow) error {
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, "text/csv; charset=utf-8")
	h.Set(echo.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="usage-by-%s-%s-%s.csv"`,
		q.groupBy, q.from.Format("20060102T15Z"), q.to.Format("20060102T15Z")))
	c.Response().WriteHeader(http.StatusOK)
	w := csv.NewWriter(c.Response())
	_ = w.Write([]string{keyField, "requests", "tokens_in", "tokens_out", "cost_usd", "cost_usd_micros"})
	for _, r := range rows {
		_ = w.Write([]string{csvText(r.Key), strconv.FormatInt(r.Requests, 10), strconv.FormatInt(r.TokensIn, 10),
			strconv.FormatInt(r.TokensOut, 10), string(usd(r.CostUSDMicros)), strconv.FormatInt(r.CostUSDMicros, 10)})
	}
	w.Flush()
	return w.Error()
}

// csvText prefixes a cell a spreadsheet would run as a formula with "'".
func csvText(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// usd writes micro-dollars as an exact decimal number of dollars.
func usd(micros int64) json.Number {
	sign := ""
	if micros < 0 {
		sign, micros = "-", -micros
	}
	return json.Number(fmt.Sprintf("%s%d.%06d", sign, micros/1_000_000, micros%1_000_000))
}

// usageKeyField names the key of a report grouped by group.
func usageKeyField(group string) string {
	if group == "model" {
		return "model"
	}
	return group + "_id"
}

// decodeUsageQuery reads and validates the query, reporting every bad parameter in
// one 422.
func decodeUsageQuery(c echo.Context) (usageQuery, error) {
	rep := &report{}
	q := usageQuery{groupBy: c.QueryParam("group_by"), format: c.QueryParam("format")}
	if q.groupBy == "" {
		rep.check("group_by", false, "is required: one of "+list(store.UsageGroups))
	} else {
		ok, msg := oneOf(q.groupBy, store.UsageGroups)
		rep.check("group_by", ok, msg)
	}
	if q.format == "" {
		q.format = "json"
	}
	ok, msg := oneOf(q.format, usageFormats)
	rep.check("format", ok, msg)
	from, fromOK := queryTime(c, rep, "from")
	to, toOK := queryTime(c, rep, "to")
	from, to = from.UTC(), to.UTC()
	if fromOK && toOK {
		rep.check("to", from.Before(to), "must be after from")
		rep.check("to", to.Sub(from) <= maxExportRange, "must be at most 366 days after from")
	}
	q.from = from.Truncate(time.Hour)
	q.to = to.Truncate(time.Hour)
	if q.to.Before(to) {
		q.to = q.to.Add(time.Hour)
	}
	return q, rep.err()
}
