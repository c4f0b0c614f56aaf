// Command bench measures what the data plane adds to a request. It starts an embedded
// nats-server with a three-client policy, a JWKS issuer, the mock upstream and a data
// plane built from source and run as a separate process with JWT auth on, then drives
// a bounded number of requests at each concurrency level, non-streaming and streaming:
// straight to the mock, through the gateway as a client without limits, and through
// the gateway as a client whose global limits are far out of reach (limits on). It
// prints p50, p99 and RPS per cell, the latency the gateway adds with limits off and
// on, the limiter's KV operations per admitted request and the gateway's peak RSS, and
// writes the tables to docs/benchmarks.md.
//
// It is a benchmark, not a test: what it measures is not held to a goal. It does fail,
// with no report, if any limits-on request fails or the limiter's admission count does
// not match the requests sent, so a broken limiter cannot produce a report. Run it with
// make bench or go run ./tests/bench from the repository root.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// config is the benchmark's configuration, from flags.
type config struct {
	Requests     int           // measured requests per cell and round
	Rounds       int           // interleaved rounds; each figure is the median over them
	Warmup       int           // unmeasured requests before each cell
	Concurrency  []int         // levels
	MaxDuration  time.Duration // a cell stops early after this long
	Out          string        // markdown report path, relative to the repository root; "" skips it
	DataplaneBin string        // a prebuilt data plane; "" builds one
	// DataplaneLabel says what DataplaneBin was built from, for its saved breakdown.
	DataplaneLabel string
	Console        bool   // time the console's pages (BenchmarkConsolePages)
	Profile        bool   // profile the data plane under load (PORTCULLIS_PPROF)
	ProfileDir     string // where the raw profiles go; "" keeps none
	TraceDir       string // where an execution trace at concurrency 1 goes; "" takes none
	// ProfileBefore is a saved breakdown the report compares this run's with
	// (relative to the repository root; missing: no comparison); ProfileSave is
	// where this run's breakdown is saved ("": not saved).
	ProfileBefore, ProfileSave string
	// Soak, when its Duration is set, runs the soak (make soak) instead of the benchmark.
	Soak soakConfig
}

func loadConfig(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&c.Requests, "requests", 3000, "measured requests per cell (target, mode, concurrency) and round")
	fs.IntVar(&c.Rounds, "rounds", 3, "interleaved rounds of every cell; each figure is the median over the rounds")
	fs.IntVar(&c.Warmup, "warmup", 200, "unmeasured warm-up requests before each cell")
	levels := fs.String("concurrency", "1,16,64", "comma-separated concurrency levels")
	fs.DurationVar(&c.MaxDuration, "max-duration", 60*time.Second, "stop a cell early after this long")
	fs.StringVar(&c.Out, "out", "docs/benchmarks.md", "markdown report, relative to the repository root (empty: none)")
	fs.StringVar(&c.DataplaneBin, "dataplane-bin", "", "use this data plane binary instead of building ./dataplane/cmd/dataplane")
	fs.StringVar(&c.DataplaneLabel, "dataplane-label", "a prebuilt data plane",
		"what -dataplane-bin was built from (a commit), named in its breakdown saved with -profile-save")
	fs.BoolVar(&c.Console, "console", true, "time the console's pages at 10k clients and 1M archived events")
	fs.BoolVar(&c.Profile, "profile", true, "profile the data plane's CPU and allocations under load, limits off and on")
	fs.StringVar(&c.ProfileDir, "profile-dir", "", "write the raw profiles here, for go tool pprof (the soak: heap profiles as it settles and as it ends; empty: none)")
	fs.StringVar(&c.TraceDir, "trace-dir", "", "save 2 s execution traces of the data plane at concurrency 1, limits on, here: chat completions, and streams from the paced mock (go tool trace; empty: none)")
	fs.StringVar(&c.ProfileBefore, "profile-before", "docs/benchmarks-profile-before.json",
		"a breakdown saved with -profile-save, shown beside this run's (relative to the repository root; empty: none)")
	fs.StringVar(&c.ProfileSave, "profile-save", "", "save this run's per-request breakdown as JSON, relative to the repository root")
	fs.DurationVar(&c.Soak.Duration, "soak", 0, "run the soak instead of the benchmark, for this long (make soak: 10m)")
	fs.IntVar(&c.Soak.Concurrency, "soak-concurrency", 16, "the soak's connections")
	fs.DurationVar(&c.Soak.Sample, "soak-sample", 10*time.Second, "how often the soak samples RSS and the archive")
	fs.DurationVar(&c.Soak.Settle, "soak-settle", time.Minute, "the start of the soak left out of the RSS spread")
	fs.DurationVar(&c.Soak.DrainTimeout, "soak-drain-timeout", 10*time.Minute, "how long the archive may take to catch up after the soak's load")
	fs.StringVar(&c.Soak.Out, "soak-out", "docs/soak.md", "the soak's markdown report, relative to the repository root (empty: none)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	var problems []error
	if fs.NArg() > 0 {
		problems = append(problems, fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	if c.Requests < 1 || c.Requests > 1_000_000 {
		problems = append(problems, fmt.Errorf("requests %d: want 1..1000000", c.Requests))
	}
	if c.Rounds < 1 || c.Rounds > 100 {
		problems = append(problems, fmt.Errorf("rounds %d: want 1..100", c.Rounds))
	}
	if c.Warmup < 0 || c.Warmup > 100_000 {
		problems = append(problems, fmt.Errorf("warmup %d: want 0..100000", c.Warmup))
	}
	if c.MaxDuration <= 0 {
		problems = append(problems, fmt.Errorf("max-duration %s: must be positive", c.MaxDuration))
	}
	for _, s := range strings.Split(*levels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 1024 {
			problems = append(problems, fmt.Errorf("concurrency %q: want integers in 1..1024", *levels))
			break
		}
		c.Concurrency = append(c.Concurrency, n)
	}
	if c.Soak.Duration < 0 || c.Soak.Concurrency < 1 || c.Soak.Concurrency > 1024 || c.Soak.Sample <= 0 || c.Soak.Settle < 0 || c.Soak.DrainTimeout <= 0 {
		problems = append(problems, errors.New("soak: want a duration ≥ 0, 1..1024 connections, and a positive sample interval and drain timeout"))
	}
	if d := c.Soak.Duration; d > 0 && d < c.Soak.Settle+2*rssWindow {
		problems = append(problems, fmt.Errorf("soak %s: RSS is judged by the mean of each whole minute after the first %s, so the soak needs at least %s",
			d, c.Soak.Settle, c.Soak.Settle+2*rssWindow))
	}
	return c, errors.Join(problems...)
}

// repoRoot finds the directory holding go.work, from the working directory up.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.work not found: run from inside the repository")
		}
		dir = parent
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := loadConfig(args, stderr)
	if err != nil {
		return err
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	host := describeMachine(root) // before the load, for its load average
	if cfg.Soak.Duration > 0 {
		return runSoak(ctx, cfg, root, host, stdout)
	}
	tmp, err := os.MkdirTemp("", "portcullis-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	fmt.Fprintln(stdout, "bench: starting NATS, issuer, mock upstream and data plane")
	st, err := startStack(ctx, root, tmp, cfg.DataplaneBin, cfg.Profile || cfg.TraceDir != "", stdout)
	if err != nil {
		return err
	}
	defer st.Stop()

	runStart, err := st.scrapeLimits(ctx)
	if err != nil {
		return err
	}
	var rounds [][]result
	for round := 1; round <= cfg.Rounds; round++ {
		fmt.Fprintf(stdout, "bench: round %d of %d\n", round, cfg.Rounds)
		var results []result
		for _, stream := range []bool{false, true} {
			for _, c := range cfg.Concurrency {
				for _, t := range st.targets() {
					r, err := runCell(ctx, st, t, cell{Target: t.Name, Stream: stream, Concurrency: c}, cfg)
					if err != nil {
						return err
					}
					fmt.Fprintf(stdout, "bench: %-40s p50 %8s  p99 %8s  %8.0f req/s  %d errors%s\n",
						r.cell, fmtDur(r.P50), fmtDur(r.P99), r.RPS, r.Errors, limitsNote(r))
					results = append(results, r)
				}
			}
		}
		rounds = append(rounds, results)
	}
	results := medianOfRounds(rounds)
	runEnd, err := st.scrapeLimits(ctx)
	if err != nil {
		return err
	}
	if cfg.TraceDir != "" {
		saved, err := traceAtOne(ctx, st, st.limited, cfg.TraceDir)
		if err != nil {
			return fmt.Errorf("trace: %w", err)
		}
		fmt.Fprintln(stdout, "bench: execution traces:", strings.Join(saved, ", "))
	}
	var profiles []profileSummary
	if cfg.Profile {
		if profiles, err = profileAndSummarize(ctx, st, cfg, host, root, stdout); err != nil {
			return err
		}
	}
	before, err := loadProfileBefore(root, cfg.ProfileBefore)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "bench: time to first token on the paced mock, %d streams per target\n", ttftRequests)
	ttft, err := ttftPhase(ctx, st, ttftRequests)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "bench: %d slow unauthenticated 4 MiB bodies\n", slowClients)
	slow, err := slowPhase(ctx, st)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "bench: %s\n", slow.Summary())
	rss, err := st.gw.PeakRSS()
	if err != nil {
		return fmt.Errorf("gateway peak RSS: %w", err)
	}

	fmt.Fprintln(stdout, "bench: guardrail detectors' speed and quality, in this process")
	guard, err := measureGuardrails(root)
	if err != nil {
		return err
	}

	var console consoleResult
	if cfg.Console {
		fmt.Fprintln(stdout, "bench: console pages at 10k clients and 1M archived events (the seed takes about a minute)")
		if console, err = consolePhase(ctx, root); err != nil {
			return err
		}
	}

	rep := report{OTLPExports: st.otlp.Exports(), OTLPBytes: st.otlp.Bytes(), Results: results, Rounds: cfg.Rounds, NginxNote: st.nginxNote, Profiles: profiles, ProfileBefore: before, WholeRun: runEnd.sub(runStart), PeakRSSKiB: rss, Slow: slow, TTFT: ttft, Guardrails: guard,
		Console: console, Config: cfg, Machine: host}
	md := rep.Markdown()
	fmt.Fprintln(stdout)
	fmt.Fprint(stdout, rep.Tables())
	if cfg.Out != "" {
		path := filepath.Join(root, cfg.Out)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(md), 0o644); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
		fmt.Fprintf(stdout, "\nbench: wrote %s\n", cfg.Out)
	}
	return nil
}

// runCell warms t up and measures one cell. On the limits-on target it scrapes the
// limiter's counters around the measured requests and fails unless the limiter
// admitted exactly the requests sent.
func runCell(ctx context.Context, st *stack, t target, c cell, cfg config) (result, error) {
	if err := warm(ctx, t, c, cfg.Warmup); err != nil {
		return result{}, fmt.Errorf("warm-up %s: %w", c, err)
	}
	var before limitsCounters
	if t.Limited {
		var err error
		if before, err = st.scrapeLimits(ctx); err != nil {
			return result{}, fmt.Errorf("%s: %w", c, err)
		}
	}
	r, err := measure(ctx, t, c, cfg.Requests, cfg.MaxDuration)
	if err != nil {
		return result{}, fmt.Errorf("%s: %w", c, err)
	}
	if !t.Limited {
		return r, nil
	}
	after, err := st.scrapeLimits(ctx)
	if err != nil {
		return result{}, fmt.Errorf("%s: %w", c, err)
	}
	d := after.sub(before)
	if d.Admitted != float64(r.Requests) {
		return result{}, fmt.Errorf("%s: the limiter admitted %.0f requests of client %s, but %d were sent and answered",
			c, d.Admitted, limitedClient, r.Requests)
	}
	r.Limits = &d
	return r, nil
}

// limitsNote is the console's summary of a limits-on cell's KV use.
func limitsNote(r result) string {
	if r.Limits == nil {
		return ""
	}
	ratio, _ := r.Limits.OpsPerAdmitted()
	note := fmt.Sprintf("  %.0f KV ops (%.4f per admitted request)", r.Limits.TotalKVOps(), ratio)
	handler, ok1 := r.Limits.TimingMean(timingMetrics[0])
	upstream, ok2 := r.Limits.TimingMean(timingMetrics[1])
	if ok1 && ok2 {
		note += fmt.Sprintf("; the gateway's own mean: %s in the handler, %s of it to the upstream's first byte", fmtDur(handler), fmtDur(upstream))
	}
	return note
}
