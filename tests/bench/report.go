package main

import (
	"bufio"
	"fmt"
	"math/bits"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/portcullis-gw/portcullis/tests/guardrails"
)

// machine describes where the benchmark ran.
type machine struct {
	CPU, Kernel, Go, OSArch, Commit string
	LoadAvg                         string // 1, 5 and 15 minute load averages when the run started
	Cores                           int
	Date                            time.Time
}

func describeMachine(root string) machine {
	m := machine{
		CPU:     "unknown",
		Kernel:  "unknown",
		Go:      runtime.Version(),
		OSArch:  runtime.GOOS + "/" + runtime.GOARCH,
		Cores:   runtime.NumCPU(),
		Commit:  "unknown",
		LoadAvg: "unknown",
		Date:    time.Now().UTC(),
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command("git", "-C", root, "rev-parse", "--short=12", "HEAD").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
		if st, err := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
			m.Commit += " (with uncommitted changes)"
		}
	}
	return m
}

// kvOpsGoal is the goal for KV operations per admitted request far from the limit
// (issue 3, acceptance 7).
const kvOpsGoal = 0.05

// report renders the results.
type report struct {
	// Results are the cells, each the median of Rounds interleaved rounds.
	Results []result
	Rounds  int
	// NginxNote says why there is no bare-proxy row; "" when there is one.
	NginxNote string
	// Profiles are this run's per-request breakdowns; ProfileBefore an earlier
	// commit's, saved with -profile-save (nil: none).
	Profiles, ProfileBefore []profileSummary
	// WholeRun is how the limiter's counters changed from before the first cell to
	// after the last: warm-ups and leases given back between cells included.
	WholeRun   limitsCounters
	PeakRSSKiB int64
	// Slow is the slow-body phase, after the cells.
	Slow slowResult
	// TTFT is the time-to-first-token phase; Guardrails the detectors' speed and
	// quality, measured in the benchmark's process.
	TTFT       []ttftResult
	Guardrails guardrailQuality
	// OTLPExports and OTLPBytes are what the traced data plane exported to the
	// benchmark's OTLP sink over the whole run.
	OTLPExports, OTLPBytes int64
	// Console is the console pages' times; empty when not measured.
	Console consoleResult
	Config  config
	Machine machine
}

func fmtDur(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	if ms < 10 {
		return fmt.Sprintf("%.3f ms", ms)
	}
	return fmt.Sprintf("%.1f ms", ms)
}

func fmtSigned(d time.Duration) string {
	if d < 0 {
		return "-" + fmtDur(-d)
	}
	return "+" + fmtDur(d)
}

// pairs matches each result of target to with the result of target from of the same
// mode and level, as {from, to}.
func (r report) pairs(from, to string) [][2]result {
	var out [][2]result
	for _, x := range r.Results {
		if x.Target != to {
			continue
		}
		for _, base := range r.Results {
			if base.Target == from && base.Stream == x.Stream && base.Concurrency == x.Concurrency {
				out = append(out, [2]result{base, x})
			}
		}
	}
	return out
}

// limitedResults are the limits-on cells.
func (r report) limitedResults() []result {
	var out []result
	for _, x := range r.Results {
		if x.Limits != nil {
			out = append(out, x)
		}
	}
	return out
}

// limitedTotal sums the limiter counters of the limits-on cells.
func (r report) limitedTotal() limitsCounters {
	var sum limitsCounters
	for _, x := range r.limitedResults() {
		sum = sum.add(*x.Limits)
	}
	return sum
}

type table struct {
	head []string
	rows [][]string
}

func (t table) markdown() string {
	var b strings.Builder
	b.WriteString("| " + strings.Join(t.head, " | ") + " |\n")
	b.WriteString("|" + strings.Repeat("---|", len(t.head)) + "\n")
	for _, r := range t.rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	return b.String()
}

func (t table) text() string {
	widths := make([]int, len(t.head))
	for i, h := range t.head {
		widths[i] = utf8.RuneCountInString(h)
	}
	for _, r := range t.rows {
		for i, c := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	line := func(cells []string) {
		for i, c := range cells {
			b.WriteString(c + strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)+2))
		}
		b.WriteString("\n")
	}
	line(t.head)
	for _, r := range t.rows {
		line(r)
	}
	return b.String()
}

func (r report) resultsTable() table {
	t := table{head: []string{"mode", "concurrency", "target", "requests", "errors", "p50", "p99", "req/s"}}
	for _, x := range r.Results {
		t.rows = append(t.rows, []string{
			x.Mode(), fmt.Sprint(x.Concurrency), x.Target, fmt.Sprint(x.Requests), fmt.Sprint(x.Errors),
			fmtDur(x.P50), fmtDur(x.P99), fmt.Sprintf("%.0f", x.RPS),
		})
	}
	return t
}

// addedTable compares the gateway, limits off and on, with the mock on its own.
func (r report) addedTable() table {
	t := table{head: []string{"mode", "concurrency", "limits", "added p50", "added p99", "gateway req/s", "direct req/s"}}
	off, on := r.pairs(targetDirect, targetGateway), r.pairs(targetDirect, targetLimitsOn)
	for _, p := range append(off, on...) {
		d, gw := p[0], p[1]
		limits := "off"
		if gw.Target == targetLimitsOn {
			limits = "on"
		}
		t.rows = append(t.rows, []string{
			gw.Mode(), fmt.Sprint(gw.Concurrency), limits, fmtSigned(gw.P50 - d.P50), fmtSigned(gw.P99 - d.P99),
			fmt.Sprintf("%.0f", gw.RPS), fmt.Sprintf("%.0f", d.RPS),
		})
	}
	// Limits off and on side by side, per mode and level.
	slices.SortStableFunc(t.rows, func(a, b []string) int {
		if c := cmpCell(a, b); c != 0 {
			return c
		}
		return strings.Compare(a[2], b[2]) // "off" before "on"
	})
	return t
}

// cmpCell orders table rows by the mode and concurrency of the results table.
func cmpCell(a, b []string) int {
	if c := strings.Compare(a[0], b[0]); c != 0 {
		return c
	}
	ca, _ := strconv.Atoi(a[1])
	cb, _ := strconv.Atoi(b[1])
	return ca - cb
}

// limitsCostTable is what turning limits on adds to the gateway.
func (r report) limitsCostTable() table { return r.costTable(targetGateway, targetLimitsOn) }

// guardrailsCostTable is what turning every guardrail on adds to the gateway.
func (r report) guardrailsCostTable() table { return r.costTable(targetGateway, targetGuarded) }

// tracingCostTable is what tracing every request adds to the gateway with limits on.
func (r report) tracingCostTable() table { return r.costTable(targetLimitsOn, targetTraced) }

// costTable compares target, the gateway with something on, with base, the gateway
// without it.
func (r report) costTable(base, target string) table {
	t := table{head: []string{"mode", "concurrency", "p50 on − off", "p99 on − off", "req/s off", "req/s on"}}
	for _, p := range r.pairs(base, target) {
		off, on := p[0], p[1]
		t.rows = append(t.rows, []string{
			on.Mode(), fmt.Sprint(on.Concurrency), fmtSigned(on.P50 - off.P50), fmtSigned(on.P99 - off.P99),
			fmt.Sprintf("%.0f", off.RPS), fmt.Sprintf("%.0f", on.RPS),
		})
	}
	return t
}

// ttftTable is the time to first token on the paced mock, per target, with what
// each adds over the mock on its own.
func (r report) ttftTable() table {
	t := table{head: []string{"target", "requests", "first token p50", "first token p99", "added p50", "[DONE] p50"}}
	var direct time.Duration
	for _, x := range r.TTFT {
		if x.Target == targetDirect {
			direct = x.P50
		}
	}
	for _, x := range r.TTFT {
		added := "–"
		if x.Target != targetDirect {
			added = fmtSigned(x.P50 - direct)
		}
		t.rows = append(t.rows, []string{x.Target, fmt.Sprint(x.Requests), fmtDur(x.P50), fmtDur(x.P99), added, fmtDur(x.WholeP50)})
	}
	return t
}

// guardrailSummary is the detectors' speed against the targets, and their quality
// on the evaluation set.
func (r report) guardrailSummary() string {
	var b strings.Builder
	r.Guardrails.Speed.Print(&b)
	b.WriteString("\n")
	r.Guardrails.Eval.Print(&b, "tests/guardrails/testdata/eval.jsonl.gz")
	for i, c := range r.Guardrails.Cases {
		c.Print(&b, "tests/guardrails/"+guardrails.CasesFiles[i])
	}
	return b.String()
}

// kvTable is the limiter's work per limits-on cell, over all of them, and over the
// whole run.
func (r report) kvTable() table {
	t := table{head: []string{"mode", "concurrency", "admitted", "KV reads", "KV CAS", "CAS conflicts",
		"KV ops per admitted request", "leases (" + strings.Join(leaseKinds, "/") + ")", "mean KV op"}}
	row := func(mode, level string, c limitsCounters) {
		ratio := "–"
		if v, ok := c.OpsPerAdmitted(); ok {
			ratio = fmt.Sprintf("%.4f", v)
		}
		mean := "–"
		if d, ok := c.MeanKVOp(); ok {
			mean = fmtDur(d)
		}
		var perKind []string
		for _, k := range leaseKinds {
			perKind = append(perKind, fmt.Sprintf("%.0f", c.Leases[k]))
		}
		leases := strings.Join(perKind, "/")
		t.rows = append(t.rows, []string{
			mode, level, fmt.Sprintf("%.0f", c.Admitted),
			fmt.Sprintf("%.0f", c.KVOps["read"]), fmt.Sprintf("%.0f", c.KVOps["cas"]), fmt.Sprintf("%.0f", c.KVOps["cas_conflict"]),
			ratio,
			leases,
			mean,
		})
	}
	for _, x := range r.limitedResults() {
		row(x.Mode(), fmt.Sprint(x.Concurrency), *x.Limits)
	}
	row("all limits-on cells", "–", r.limitedTotal())
	row("whole run, warm-ups included", "–", r.WholeRun)
	return t
}

// kvSummary is the headline: KV operations per admitted request far from the limit,
// against the goal.
func (r report) kvSummary() string {
	total := r.limitedTotal()
	ratio, ok := total.OpsPerAdmitted()
	if !ok {
		return "No limits-on request was measured."
	}
	verdict := "met"
	if ratio > kvOpsGoal {
		verdict = "NOT met"
	}
	s := fmt.Sprintf("KV operations per admitted request over the limits-on cells, far from the limit: "+
		"%.4f (%.0f operations for %.0f requests; goal ≤ %.2f: %s).", ratio, total.TotalKVOps(), total.Admitted, kvOpsGoal, verdict)
	if total.TotalKVErrors()+r.WholeRun.TotalKVErrors() > 0 {
		s += fmt.Sprintf(" KV operations counted with result=\"error\": %.0f over the limits-on cells, %.0f over the whole run (%s).",
			total.TotalKVErrors(), r.WholeRun.TotalKVErrors(), byOp(r.WholeRun.KVErrors))
	} else {
		s += " No KV operation failed."
	}
	return s
}

func (r report) errorNotes() []string {
	var notes []string
	for _, x := range r.Results {
		if x.Errors > 0 {
			notes = append(notes, fmt.Sprintf("%s: %d errors, first: %s", x.cell, x.Errors, x.FirstError))
		}
	}
	return notes
}

// Tables is the plain-text summary printed at the end of a run.
func (r report) Tables() string {
	var b strings.Builder
	b.WriteString(r.resultsTable().text())
	b.WriteString("\n")
	if len(r.proxyCells()) > 0 {
		b.WriteString(r.proxyTable().text() + "\n")
	}
	for _, l := range r.targetsSummary() {
		b.WriteString(l + "\n")
	}
	if len(r.Profiles) > 0 {
		b.WriteString("\nCPU per request, µs:\n" + r.cpuBreakdown().text())
		b.WriteString("\nallocated per request, KiB:\n" + r.allocBreakdown().text() + "\n")
	}
	b.WriteString(r.addedTable().text())
	b.WriteString("\n")
	b.WriteString(r.limitsCostTable().text())
	b.WriteString("\n")
	b.WriteString(r.kvTable().text())
	b.WriteString("\n" + r.kvSummary() + "\n")
	fmt.Fprintf(&b, "\ngateway peak RSS (VmHWM): %.1f MiB\n", float64(r.PeakRSSKiB)/1024)
	b.WriteString("slow bodies: " + r.Slow.Summary() + "\n")
	b.WriteString("\nguardrails on − off:\n" + r.guardrailsCostTable().text())
	b.WriteString("\ntracing on − off (limits on):\n" + r.tracingCostTable().text())
	b.WriteString("\ntime to first token, paced mock:\n" + r.ttftTable().text())
	b.WriteString("\n" + r.guardrailSummary())
	if len(r.Console.Pages) > 0 {
		b.WriteString("\nconsole pages (" + r.Console.Seed + "):\n" + r.Console.table().text())
	}
	for _, n := range r.errorNotes() {
		b.WriteString("errors: " + n + "\n")
	}
	return b.String()
}

// Markdown is the docs/benchmarks.md page.
func (r report) Markdown() string {
	var b strings.Builder
	m := r.Machine
	b.WriteString("# Benchmarks\n\n")
	b.WriteString("Generated by `make bench` (`go run ./tests/bench`); rerun it to refresh this page.\n\n")
	b.WriteString("## What is measured\n\n")
	fmt.Fprintf(&b, "- One data plane, built from source and run as its own process with JWT auth on "+
		"(ES256, JWKS over HTTP), reads a signed three-client policy from an embedded nats-server's `PC_POLICY` "+
		"bucket (connected with its region's credentials, as in production) and proxies to the deterministic mock upstream (`tests/mockupstream`), whose key it reads "+
		"from a file. It logs at its default level (info: one JSON line per request, to a file), and audits "+
		"every request as in production: the event is built (keyed hashes of prompt and answer), written as a "+
		"JSON line to a file sink, fsync'd to the on-disk spool in group commits behind the answer, and relayed "+
		"to the region's `PC_AUDIT_<REGION>` stream.\n")
	fmt.Fprintf(&b, "- Each cell sends %d `POST /v1/chat/completions` requests (after %d warm-up requests) "+
		"from a Go load generator (`tests/bench/load.go`) at a fixed concurrency, over kept-alive connections, to the targets in turn; "+
		"the cells run in %d interleaved rounds, so that a slow moment of the machine does not fall on one target only. The targets: "+
		"straight to the mock (`%s`, which also shows what the load generator itself costs), through nginx as a bare proxy (`%s`, "+
		"when nginx is installed), through the gateway as a client whose tier sets no limits (`%s`), and "+
		"through the gateway as a client whose tier has global limits (`%s`), and through the gateway as the "+
		"first client with every guardrail on (`%s`, see [Guardrails](#guardrails)). A request's latency runs from "+
		"sending it to reading the whole answer; a stream must end in `data: [DONE]`.\n",
		r.Config.Requests, r.Config.Warmup, r.Rounds, targetDirect, targetNginx, targetGateway, targetLimitsOn, targetGuarded)
	fmt.Fprintf(&b, "- Limits on means the limits are enforced but far out of reach (2^%d requests per minute, "+
		"2^%d tokens per hour, 2^%d concurrent requests), the common case: every request takes a concurrency slot, "+
		"a request from the minute window and a token reservation, which the data plane settles afterwards. "+
		"It spends budget it has leased from the `PC_LIMITS` KV bucket, so the hot path stays local; lease "+
		"sizes grow while the windows are far from their limits, and only a lease running out costs KV "+
		"operations. Any failed limits-on request fails the run, as does an admission count that does not "+
		"match the requests sent. Limits off means the tier's limits are 0 (unlimited in the data plane; "+
		"the admin API does not accept 0, but the benchmark writes the policy snapshot itself): the "+
		"limiter is skipped.\n", log2(farRequestsPerMinute), log2(farTokensPerHour), log2(farConcurrency))
	b.WriteString("- The benchmark runs one data plane, so leases are never shared with peers; with more " +
		"workers each leases a smaller share near a limit, but far from the limits the count of KV " +
		"operations per worker is what is measured here.\n")
	b.WriteString("- The streaming cells ask for `stream_options.include_usage`; the mock answers with 11 " +
		"SSE events and no delay between them, so they measure per-event overhead, not model speed.\n")
	b.WriteString("- Load generator, mock upstream, NATS and gateway share one machine, so the gateway " +
		"competes with its own load for CPU; treat the numbers as an upper bound on overhead and " +
		"compare runs on the same machine only. The nats-server runs inside the benchmark's process, beside " +
		"the load generator and the mock: the JetStream work of each audit event (store, dedupe, ack) is paid " +
		"there, on the same cores, and nginx has no such work.\n\n")
	b.WriteString("## Machine\n\n")
	fmt.Fprintf(&b, "- CPU: %s, %d cores\n", m.CPU, m.Cores)
	fmt.Fprintf(&b, "- OS: %s, kernel %s\n", m.OSArch, m.Kernel)
	fmt.Fprintf(&b, "- Load average when the run started: %s\n", m.LoadAvg)
	fmt.Fprintf(&b, "- Go: %s\n", m.Go)
	fmt.Fprintf(&b, "- Commit: %s\n", m.Commit)
	fmt.Fprintf(&b, "- Date: %s\n\n", m.Date.Format(time.RFC3339))
	b.WriteString("## Against a bare proxy\n\n")
	if r.NginxNote != "" {
		b.WriteString(r.NginxNote + ".\n\n")
	} else {
		fmt.Fprintf(&b, "nginx, one worker process with no access log and kept-alive connections to the mock, proxies the same "+
			"mock as the gateway (`%s`). Each side's *added* latency is its p50 or p99 minus the mock's own (`%s`); the "+
			"gateway here is the limits-on client, with everything on: JWT, global limits, residency routing, breakers, "+
			"audit through the spool. Every figure is the median of %d interleaved rounds.\n\n", targetNginx, targetDirect, r.Rounds)
		b.WriteString(r.proxyTable().markdown() + "\n")
	}
	for _, l := range r.targetsSummary() {
		b.WriteString("- " + l + "\n")
	}
	b.WriteString(r.profileMarkdown())
	b.WriteString("\n## Results\n\n")
	fmt.Fprintf(&b, "Each figure is the median over %d rounds; requests and errors are summed over them.\n\n", r.Rounds)
	b.WriteString(r.resultsTable().markdown())
	b.WriteString("\n## Added by the gateway\n\n")
	b.WriteString("Latency the gateway adds over the mock on its own, with limits off and on.\n\n")
	b.WriteString(r.addedTable().markdown())
	fmt.Fprintf(&b, "\nGateway peak RSS (VmHWM) over the whole run: %.1f MiB.\n", float64(r.PeakRSSKiB)/1024)
	b.WriteString("\n## Slow unauthenticated bodies\n\n")
	b.WriteString("After the cells, " + r.Slow.Summary() + ". The gateway checks the token from the headers " +
		"before it reads a byte of the body, so each of them costs its headers and is answered 401 at once; " +
		"the issue's bound is under 50 MiB of growth.\n")
	b.WriteString("\n## Global limits\n\n")
	b.WriteString(r.kvSummary() + "\n\n")
	b.WriteString("What turning limits on adds to the gateway (limits-on cell minus limits-off cell):\n\n")
	b.WriteString(r.limitsCostTable().markdown())
	b.WriteString("\nThe limiter's work, from the data plane's `/metrics` scraped before and after each " +
		"limits-on cell's measured requests: KV operations on `PC_LIMITS` " +
		"(`portcullis_limits_kv_ops_total`, every op and result), admitted requests of the limited client " +
		"(`portcullis_limits_admitted_total`), leases taken (`portcullis_limits_lease_acquisitions_total`) " +
		"and the mean KV operation latency (`portcullis_limits_kv_op_seconds`, sum over count). The whole-run " +
		"row runs from before the first cell to after the last, so it also counts the warm-ups, whose first " +
		"requests take the smallest leases, and leases given back while the limited client sat idle during " +
		"the other targets' cells. Budget given back resets the lease size, and so does a new UTC minute for the request window, so a cell may start again from small leases (more KV operations) or still spend a lease left over from the previous limits-on cell (fewer); a cell that crosses a minute takes more request leases than one that does not. Heartbeats to `PC_WORKERS` are not KV operations on `PC_LIMITS` and are not counted.\n\n")
	b.WriteString(r.kvTable().markdown())
	b.WriteString("\n## Tracing\n\n")
	fmt.Fprintf(&b, "The `%s` target is the limits-on client on a second data plane that traces every request "+
		"(`OTEL_TRACES_SAMPLER=always_on`) and exports the spans over OTLP/HTTP to a stand-in collector in the benchmark, "+
		"which took %d exports (%.1f MiB) over the run. What tracing adds over the same client on the untraced data plane "+
		"(`%s`). With no OTLP endpoint, as on every other target, a span costs a nil check and no allocation "+
		"(`TestOffAllocatesNothing` in `dataplane/internal/tracing`):\n\n",
		targetTraced, r.OTLPExports, float64(r.OTLPBytes)/(1<<20), targetLimitsOn)
	b.WriteString(r.tracingCostTable().markdown())
	b.WriteString("\n## Guardrails\n\n")
	fmt.Fprintf(&b, "The `%s` target is the limits-off client on a tier with every guardrail family on in both "+
		"directions (PII redact, secrets block, injection block): each request's messages are decoded, scanned and "+
		"re-encoded before they go upstream, and the answer is scanned (whole, or delta by delta for a stream) before "+
		"it goes back. What that adds over the same client with guardrails off (same cells as above):\n\n", targetGuarded)
	b.WriteString(r.guardrailsCostTable().markdown())
	fmt.Fprintf(&b, "\n**Time to first token.** A second mock, paced at %s between streamed chunks (a model writing "+
		"about 200 tokens a second), answers %d streamed requests per target, one at a time; the time runs from sending "+
		"the request to reading the first event with content text. With output guardrails the gateway holds back the "+
		"last word it has until the next delta shows that it ended (a key or a card number may go on), so the first word "+
		"waits for the second: about one chunk interval, the hold-back window, is what guardrails may add.\n\n",
		pacedChunkDelay, ttftRequests)
	b.WriteString(r.ttftTable().markdown())
	b.WriteString("\n**Detectors**, measured in the benchmark's process on one goroutine after the load " +
		"(`tests/guardrails.MeasureSpeed`; the clean prompt is ordinary prose with figures, dates and a URL), and " +
		"their quality on the generated evaluation set and the hand-written cases (item level, at the default threshold; `make guardrails-eval` " +
		"prints the same and takes more files):\n\n```\n" + r.guardrailSummary() + "```\n")
	if len(r.Console.Pages) > 0 {
		b.WriteString("\n## Console\n\n")
		b.WriteString("`BenchmarkConsolePages` (`controlplane/app`, run by `make bench` in a child `go test`) starts a " +
			"control plane on a fresh database, seeds 10,000 clients in 100 tenants and 1,000,000 audit events over 30 days " +
			"in two regions through the store's real archive path (hash chains, usage and traffic rollups), signs in an admin " +
			"and a tenant admin through the dev OIDC provider, and requests each page " + consoleBenchTime + " over loopback. " +
			"The time is the mean per request, so server time plus a little client time; the issue's bound is 200 ms. " +
			"The benchmark " + r.Console.Seed + ".\n\n")
		b.WriteString(r.Console.table().markdown())
	}
	if notes := r.errorNotes(); len(notes) > 0 {
		b.WriteString("\n## Errors\n\n")
		for _, n := range notes {
			b.WriteString("- " + n + "\n")
		}
	}
	return b.String()
}

// log2 is the exponent of a power of two.
func log2(n uint64) int { return bits.Len64(n) - 1 }

// byOp lists the non-zero counts of m as "op: n, ...", in the order of kvOps.
func byOp(m map[string]float64) string {
	var parts []string
	for _, op := range kvOps {
		if m[op] != 0 {
			parts = append(parts, fmt.Sprintf("%s: %.0f", op, m[op]))
		}
	}
	return strings.Join(parts, ", ")
}
