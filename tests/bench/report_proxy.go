package main

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// The targets of the performance issue (19, scope 4), against the bare proxy in the
// same run, with everything on (the limits-on target: JWT, global limits, residency
// routing, audit through the spool, breakers); and the floor below which it cannot
// be resolved.
const (
	addedP50Target   = 1.5  // gateway's added p50 at 1 connection ≤ this × nginx's
	addedP50Floor    = 3.0  //
	rpsAt16Target    = 0.75 // gateway's req/s at 16 connections ≥ this × nginx's
	rpsAt16Floor     = 0.4  //
	peakRSSTargetMiB = 150
	ttftTarget       = 200 * time.Microsecond // streaming time-to-first-token overhead
)

// proxyTable compares what the gateway with everything on adds to a request with
// what the bare proxy adds, both over the mock on its own, per mode and level.
func (r report) proxyTable() table {
	t := table{head: []string{"mode", "concurrency", "nginx added p50", "gateway added p50", "ratio",
		"nginx added p99", "gateway added p99", "ratio", "nginx req/s", "gateway req/s", "ratio"}}
	for _, c := range r.proxyCells() {
		t.rows = append(t.rows, []string{
			c.gw.Mode(), fmt.Sprint(c.gw.Concurrency),
			fmtSigned(c.nginxAddedP50()), fmtSigned(c.gwAddedP50()), fmtRatio(c.p50Ratio()),
			fmtSigned(c.nginx.P99 - c.direct.P99), fmtSigned(c.gw.P99 - c.direct.P99),
			fmtRatio(ratio(float64(c.gw.P99-c.direct.P99), float64(c.nginx.P99-c.direct.P99))),
			fmt.Sprintf("%.0f", c.nginx.RPS), fmt.Sprintf("%.0f", c.gw.RPS), fmtRatio(c.rpsRatio()),
		})
	}
	return t
}

// proxyCell is one mode and level's direct, nginx and limits-on results.
type proxyCell struct{ direct, nginx, gw result }

func (c proxyCell) nginxAddedP50() time.Duration { return c.nginx.P50 - c.direct.P50 }
func (c proxyCell) gwAddedP50() time.Duration    { return c.gw.P50 - c.direct.P50 }
func (c proxyCell) p50Ratio() float64 {
	return ratio(float64(c.gwAddedP50()), float64(c.nginxAddedP50()))
}
func (c proxyCell) rpsRatio() float64 { return ratio(c.gw.RPS, c.nginx.RPS) }

// ratio is a/b, or NaN when b is not positive (the proxy added nothing measurable).
func ratio(a, b float64) float64 {
	if b <= 0 {
		return math.NaN()
	}
	return a / b
}

func fmtRatio(x float64) string {
	if math.IsNaN(x) {
		return "–"
	}
	return fmt.Sprintf("%.2f×", x)
}

// proxyCells are the cells that have all three results, in the results' order.
func (r report) proxyCells() []proxyCell {
	find := func(target string, like result) (result, bool) {
		for _, x := range r.Results {
			if x.Target == target && x.Stream == like.Stream && x.Concurrency == like.Concurrency {
				return x, true
			}
		}
		return result{}, false
	}
	var out []proxyCell
	for _, gw := range r.Results {
		if gw.Target != targetLimitsOn {
			continue
		}
		d, ok1 := find(targetDirect, gw)
		n, ok2 := find(targetNginx, gw)
		if ok1 && ok2 {
			out = append(out, proxyCell{direct: d, nginx: n, gw: gw})
		}
	}
	return out
}

// verdict says whether x meets a target (at most or at least it) and the floor.
func verdict(x, target, floor float64, atMost bool) string {
	if math.IsNaN(x) {
		return "not measured"
	}
	meets := func(bound float64) bool {
		if atMost {
			return x <= bound
		}
		return x >= bound
	}
	switch {
	case meets(target):
		return "target met"
	case meets(floor):
		return "target NOT met, floor met"
	}
	return "target and floor NOT met"
}

// targetsSummary checks the run against the targets, one line each.
func (r report) targetsSummary() []string {
	if r.NginxNote != "" {
		return []string{"No bare-proxy reference: " + r.NginxNote + "."}
	}
	var lines []string
	for _, c := range r.proxyCells() {
		switch {
		case !c.gw.Stream && c.gw.Concurrency == 1:
			lines = append(lines, fmt.Sprintf("Added p50 at 1 connection: gateway %s, nginx %s: %s (target ≤ %.1f×, floor ≤ %.0f×): %s.",
				fmtSigned(c.gwAddedP50()), fmtSigned(c.nginxAddedP50()), fmtRatio(c.p50Ratio()), addedP50Target, addedP50Floor,
				verdict(c.p50Ratio(), addedP50Target, addedP50Floor, true)))
		case !c.gw.Stream && c.gw.Concurrency == 16:
			lines = append(lines, fmt.Sprintf("Req/s at 16 connections: gateway %.0f, nginx %.0f: %s (target ≥ %.2f×, floor ≥ %.1f×): %s.",
				c.gw.RPS, c.nginx.RPS, fmtRatio(c.rpsRatio()), rpsAt16Target, rpsAt16Floor,
				verdict(c.rpsRatio(), rpsAt16Target, rpsAt16Floor, false)))
		}
	}
	rssMiB := float64(r.PeakRSSKiB) / 1024
	rssVerdict := "met"
	if rssMiB > peakRSSTargetMiB {
		rssVerdict = "NOT met"
	}
	lines = append(lines, fmt.Sprintf("Gateway peak RSS over the run: %.1f MiB (target ≤ %d MiB): %s. "+
		"Whether it stays flat over 10 minutes under load is `make soak`'s to show ([soak.md](soak.md)).", rssMiB, peakRSSTargetMiB, rssVerdict))
	if added, ok := r.ttftAdded(targetLimitsOn); ok {
		v := "met"
		if added > ttftTarget {
			v = "NOT met"
		}
		lines = append(lines, fmt.Sprintf("Streaming time-to-first-token overhead, everything on: %s (target ≤ %s): %s.",
			fmtSigned(added), fmtDur(ttftTarget), v))
	}
	return lines
}

// ttftAdded is the first-token p50 of target minus the direct one.
func (r report) ttftAdded(target string) (time.Duration, bool) {
	var direct, got time.Duration
	var haveDirect, haveTarget bool
	for _, x := range r.TTFT {
		switch x.Target {
		case targetDirect:
			direct, haveDirect = x.P50, true
		case target:
			got, haveTarget = x.P50, true
		}
	}
	return got - direct, haveDirect && haveTarget
}

// breakdownTable is the data plane's CPU per request by stage, limits off and on,
// with the saved breakdown of an earlier commit beside this run's when there is
// one.
func (r report) breakdownTable(value func(profileSummary) map[stage]float64, format string) table {
	cols := append(append([]profileSummary(nil), r.ProfileBefore...), r.Profiles...)
	head := []string{"stage"}
	for _, p := range r.ProfileBefore {
		head = append(head, p.Target+", before ("+p.Commit+")")
	}
	for _, p := range r.Profiles {
		name := p.Target
		if len(r.ProfileBefore) > 0 {
			name += ", now"
		}
		head = append(head, name)
	}
	var ms []map[stage]float64
	for _, p := range cols {
		ms = append(ms, value(p))
	}
	t := table{head: head}
	for _, s := range stagesPresent(ms...) {
		row := []string{string(s)}
		for _, m := range ms {
			row = append(row, fmt.Sprintf(format, m[s]))
		}
		if s == stageTotal {
			for i := range row {
				row[i] = "**" + row[i] + "**"
			}
		}
		t.rows = append(t.rows, row)
	}
	return t
}

func (r report) cpuBreakdown() table {
	return r.breakdownTable(func(p profileSummary) map[stage]float64 { return p.CPUMicros }, "%.1f")
}

func (r report) allocBreakdown() table {
	return r.breakdownTable(func(p profileSummary) map[stage]float64 {
		kib := make(map[stage]float64, len(p.AllocBytes))
		for k, v := range p.AllocBytes {
			kib[k] = v / 1024
		}
		return kib
	}, "%.2f")
}

// profileMarkdown is the report's section on where the data plane's time goes.
func (r report) profileMarkdown() string {
	if len(r.Profiles) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("\n## Where the time goes\n\n")
	fmt.Fprintf(&b, "After the cells, %d workers send chat completions to the gateway, limits off and then on, while the data "+
		"plane records a CPU profile for %s and then an allocation profile for %s (`/debug/pprof` on its metrics listener, "+
		"`PORTCULLIS_PPROF=true`). Each sample is charged to the stage of the innermost frame of its stack that names one "+
		"(`tests/bench/breakdown.go` has the rules: the upstream client is Go's HTTP transport, the HTTP server Go's, the relay "+
		"copies the answer and counts its tokens), and divided by the requests answered in the window. CPU counts every "+
		"thread of the data plane, so work done behind the answer (the audit spool's fsync, the relay to NATS, GC) is "+
		"included.", profileConcurrency, profileWindow, profileWindow)
	if len(r.ProfileBefore) > 0 {
		b.WriteString(" The *before* columns are the same measurement of an earlier commit, saved with `-profile-save` " +
			"in `docs/benchmarks-profile-before.json`.")
	}
	b.WriteString("\n\nCPU per request, µs:\n\n")
	b.WriteString(r.cpuBreakdown().markdown())
	b.WriteString("\nAllocated per request, KiB:\n\n")
	b.WriteString(r.allocBreakdown().markdown())
	return b.String()
}
