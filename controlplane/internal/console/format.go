package console

import (
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"strconv"
	"time"
)

// funcs are the helpers every page template may call to format numbers.
var funcs = template.FuncMap{
	"num":     formatCount,
	"pct":     func(f float64) string { return strconv.FormatFloat(f*100, 'f', 2, 64) + "%" },
	"ms":      formatMillis,
	"usd":     formatUSD,
	"rate":    formatRate,
	"utc":     func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") },
	"json":    toJSON,
	"percent": func(part, whole int64) float64 { return ratio(part, whole) },
}

// formatCount writes n with commas between groups of three digits: 1,234,567.
func formatCount(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

// formatMillis writes a latency in milliseconds, with a decimal below 10 ms.
func formatMillis(f float64) string {
	if f < 10 {
		return strconv.FormatFloat(f, 'f', 1, 64) + " ms"
	}
	return strconv.FormatFloat(f, 'f', 0, 64) + " ms"
}

// formatUSD writes micro-dollars as dollars: cents above a dollar, more digits
// below it.
func formatUSD(micros any) string {
	var f float64
	switch v := micros.(type) {
	case int64:
		f = float64(v) / 1e6
	case float64:
		f = v / 1e6
	default:
		return fmt.Sprint(v)
	}
	switch {
	case f != 0 && f < 0.01 && f > -0.01:
		return "$" + strconv.FormatFloat(f, 'f', 6, 64)
	case f != 0 && f < 1 && f > -1:
		return "$" + strconv.FormatFloat(f, 'f', 4, 64)
	}
	return "$" + strconv.FormatFloat(f, 'f', 2, 64)
}

// toJSON is v as JSON for a data- attribute (html/template escapes it there).
func toJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

// ratio is part/whole, 0 when whole is 0.
func ratio(part, whole int64) float64 {
	if whole == 0 {
		return 0
	}
	return float64(part) / float64(whole)
}

// formatRate writes a rate with the digits that matter: none above 100, two above
// 1, four below.
func formatRate(f float64) string {
	switch {
	case f >= 100:
		return strconv.FormatFloat(f, 'f', 0, 64)
	case f >= 1 || f == 0:
		return strconv.FormatFloat(f, 'f', 2, 64)
	}
	return strconv.FormatFloat(f, 'f', 4, 64)
}

// parseNumber parses a form's decimal number: a finite one only (ParseFloat also
// takes NaN and Inf, which JSON cannot carry).
func parseNumber(s string) (float64, bool) {
	f, err := strconv.ParseFloat(s, 64)
	return f, err == nil && !math.IsNaN(f) && !math.IsInf(f, 0)
}
