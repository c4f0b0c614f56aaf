package main

import (
	"strings"
	"testing"
	"time"
)

// soakOf is a finished soak whose RSS went through rss (MiB), one sample a minute
// from minute 0, settling after a minute.
func soakOf(rss ...int64) soakResult {
	r := soakResult{Config: soakConfig{Settle: time.Minute, DrainTimeout: time.Minute}, Sent: 1000, Archived: 1000, Distinct: 1000}
	for i, m := range rss {
		for s := range 60 { // once a second, a sawtooth of ±5% about m
			kb := m * 1024 * int64(95+s%11) / 100
			r.RSS = append(r.RSS, rssPoint{At: time.Duration(i)*time.Minute + time.Duration(s)*time.Second, KiB: kb})
		}
	}
	return r
}

func TestSoakChecks(t *testing.T) {
	tests := []struct {
		name string
		r    soakResult
		fail string // the FAIL line's start; "" when every check passes
	}{
		{name: "flat", r: soakOf(40, 90, 95, 92, 99)},
		{name: "the settle time is left out", r: soakOf(10, 100, 100)},
		{name: "growing", r: soakOf(90, 90, 95, 100), fail: "FAIL: RSS, the mean of each minute after the first 1m0s, stayed between 89.8 and 99.8 MiB: a spread of 11.1%"},
		{name: "too few minutes", r: soakOf(90, 90), fail: "FAIL: RSS: fewer than two whole minutes"},
		{name: "errors", r: func() soakResult {
			r := soakOf(90, 90, 90)
			r.Errors, r.FirstError = 2, "status 502"
			return r
		}(), fail: "FAIL: 2 of 1000 requests failed; the first: status 502"},
		{name: "an event lost", r: func() soakResult {
			r := soakOf(90, 90, 90)
			r.Archived, r.Distinct, r.DrainFailed = 999, 999, true
			return r
		}(), fail: "FAIL: the archive holds 999 events of soak-client (999 distinct request ids) for 1000 requests sent: still short 1m0s"},
		{name: "an event archived twice", r: func() soakResult {
			r := soakOf(90, 90, 90)
			r.Distinct = 999
			return r
		}(), fail: "FAIL: the archive holds 1000 events of soak-client (999 distinct request ids)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines, passed := tt.r.checks()
			if len(lines) != 3 {
				t.Fatalf("%d check lines, want 3: %q", len(lines), lines)
			}
			var failed []string
			for _, l := range lines {
				if strings.HasPrefix(l, "FAIL") {
					failed = append(failed, l)
				}
			}
			if tt.fail == "" {
				if !passed || len(failed) > 0 {
					t.Fatalf("want every check to pass: %q", lines)
				}
				return
			}
			if passed || len(failed) != 1 || !strings.HasPrefix(failed[0], tt.fail) {
				t.Fatalf("want one failed check starting %q, got passed=%t %q", tt.fail, passed, lines)
			}
			if md := tt.r.Markdown(lines); !strings.Contains(md, "- "+failed[0]) {
				t.Fatalf("the report does not show the failed check:\n%s", md)
			}
		})
	}
}
