package main

// The soak (make soak): the whole gateway under steady load for a long run, to show
// that its memory stays flat and that no request's audit event is lost on the way
// to the archive. Unlike the benchmark's stack it runs a control plane, on a fresh
// database of the local Postgres, that archives the region's audit stream.

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	cpapp "github.com/portcullis-gw/portcullis/controlplane/app"
	"github.com/portcullis-gw/portcullis/controlplane/pglocal"
	dpapp "github.com/portcullis-gw/portcullis/dataplane/app"
	"github.com/portcullis-gw/portcullis/shared/identity"
	"github.com/portcullis-gw/portcullis/shared/logging"
	"github.com/portcullis-gw/portcullis/tests/mockupstream"
	teststack "github.com/portcullis-gw/portcullis/tests/stack"
)

const (
	soakClient = "soak-client"
	// soakRSSSpread is the most the data plane's mean RSS per minute may vary over the run after
	// the settle time: (max - min) / min.
	soakRSSSpread = 0.10
)

// soakConfig is make soak's configuration, from the -soak* flags.
type soakConfig struct {
	Duration     time.Duration // how long the load runs; 0: no soak, the benchmark
	Concurrency  int
	Sample       time.Duration // how often RSS and the archive are sampled
	Settle       time.Duration // the first part of the run, left out of the RSS spread
	DrainTimeout time.Duration // how long the archive may take to catch up after the load
	Out          string        // markdown report, relative to the repository root; "" skips it
}

// soakSample is the state of the run at one moment.
type soakSample struct {
	At     time.Duration // since the load started
	RSSKiB int64
	// AnonKiB and FileKiB split RSSKiB: private memory (heap, stacks), and the
	// pages of the binary (and other files) that were touched.
	AnonKiB, FileKiB int64
	Sent             int64 // requests answered so far, successful or not
	Errors           int64
	Archived         int64 // events of the region in the archive
	// HeapInUse (bytes) and Goroutines are the data plane's Go runtime's: a leak
	// shows in them before RSS makes it plain.
	HeapInUse, Goroutines float64
	// NextGC is the heap size the next GC starts at (bytes): GOGC% over the live
	// heap the last one left, so a live heap that grows makes it grow.
	NextGC float64
}

// soakResult is what the soak measured.
type soakResult struct {
	Config      soakConfig
	Machine     machine
	Samples     []soakSample
	RSS         []rssPoint // once a second
	Sent        int64
	Errors      int64
	FirstError  string
	Elapsed     time.Duration // of the load
	PeakRSSKiB  int64
	Archived    int64 // the client's events in the archive at the end
	Distinct    int64 // distinct request ids among them
	DrainTime   time.Duration
	DrainFailed bool // the archive did not reach Sent within DrainTimeout
}

// rssPoint is one reading of the data plane's RSS, taken once a second.
type rssPoint struct {
	At  time.Duration // since the load started
	KiB int64
}

// rssWindow is the span whose mean RSS is one point of the flatness check.
const rssWindow = time.Minute

// rssMeans are the mean RSS of each whole rssWindow after the settle time: the
// level the GC's sawtooth (its heap grows to GOGC% over the live heap, then drops)
// moves about, which is what a leak would raise.
func (r soakResult) rssMeans() []float64 {
	var means []float64
	for from := r.Config.Settle; ; from += rssWindow {
		var sum float64
		n := 0
		last := false
		for _, p := range r.RSS {
			if p.At >= from && p.At < from+rssWindow {
				sum += float64(p.KiB)
				n++
			}
			last = last || p.At >= from+rssWindow-time.Second
		}
		if !last || n == 0 { // a window the run did not cover to its end
			return means
		}
		means = append(means, sum/float64(n))
	}
}

// rssSpread is (max - min) / min of rssMeans, and the two; ok is false with fewer
// than two windows.
func (r soakResult) rssSpread() (spread, lo, hi float64, ok bool) {
	m := r.rssMeans()
	if len(m) < 2 {
		return math.NaN(), 0, 0, false
	}
	lo, hi = slices.Min(m), slices.Max(m)
	if lo <= 0 {
		return math.NaN(), lo, hi, false
	}
	return (hi - lo) / lo, lo, hi, true
}

// rssRange is the lowest and highest single reading after the settle time.
func (r soakResult) rssRange() (lo, hi int64) {
	for _, p := range r.RSS {
		if p.At < r.Config.Settle {
			continue
		}
		if lo == 0 || p.KiB < lo {
			lo = p.KiB
		}
		hi = max(hi, p.KiB)
	}
	return lo, hi
}

// checks are the soak's verdicts: each a line, and whether it passed.
func (r soakResult) checks() (lines []string, passed bool) {
	passed = true
	add := func(ok bool, format string, args ...any) {
		mark := "PASS"
		if !ok {
			mark, passed = "FAIL", false
		}
		lines = append(lines, fmt.Sprintf("%s: %s", mark, fmt.Sprintf(format, args...)))
	}
	spread, lo, hi, ok := r.rssSpread()
	if ok {
		one, top := r.rssRange()
		add(spread <= soakRSSSpread, "RSS, the mean of each minute after the first %s, stayed between %.1f and %.1f MiB: "+
			"a spread of %.1f%% (at most %.0f%%); single readings, once a second, from %.1f to %.1f MiB",
			r.Config.Settle, lo/1024, hi/1024, 100*spread, 100*soakRSSSpread, kib(one), kib(top))
	} else {
		add(false, "RSS: fewer than two whole minutes after the first %s to judge", r.Config.Settle)
	}
	errNote := ""
	if r.FirstError != "" {
		errNote = "; the first: " + r.FirstError
	}
	add(r.Errors == 0, "%d of %d requests failed%s", r.Errors, r.Sent, errNote)
	drain := fmt.Sprintf("archived %s after the load ended", r.DrainTime.Round(100*time.Millisecond))
	if r.DrainFailed {
		drain = fmt.Sprintf("still short %s after the load ended", r.Config.DrainTimeout)
	}
	add(r.Archived == r.Sent && r.Distinct == r.Archived,
		"the archive holds %d events of %s (%d distinct request ids) for %d requests sent: %s",
		r.Archived, soakClient, r.Distinct, r.Sent, drain)
	return lines, passed
}

func kib(k int64) float64 { return float64(k) / 1024 }

// runSoak starts the soak's stack, loads it for cfg.Soak.Duration, waits for the
// archive and writes the report. It fails, after writing the report, if a check did.
func runSoak(ctx context.Context, cfg config, root string, host machine, stdout io.Writer) error {
	sc := cfg.Soak
	tmp, err := os.MkdirTemp("", "portcullis-soak-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	dbURL, dropDB, err := soakDatabase(ctx)
	if err != nil {
		return err
	}
	defer dropDB()

	bin := cfg.DataplaneBin
	if bin == "" {
		fmt.Fprintln(stdout, "soak: building ./dataplane/cmd/dataplane")
		if bin, err = buildDataplane(ctx, root, tmp); err != nil {
			return err
		}
	}
	fmt.Fprintln(stdout, "soak: starting the control plane (embedded NATS, Postgres archive), the mock upstream and one data plane")
	st, err := startSoakStack(ctx, tmp, dbURL, bin)
	if err != nil {
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
		defer cancel()
		if err := st.Stop(ctx); err != nil {
			fmt.Fprintln(stdout, "soak: stop:", err)
		}
	}()
	token, err := mintToken(ctx, st.AdminURL, st.AdminToken, soakClient)
	if err != nil {
		return err
	}
	db, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("connect to the soak database: %w", err)
	}
	defer db.Close(context.WithoutCancel(ctx))

	dp := st.DataPlane("soak")
	t := target{Name: "gateway", URL: dp.URL, Auth: "Bearer " + token, Client: newClient()}
	defer t.Client.CloseIdleConnections()
	res := soakResult{Config: sc, Machine: host}
	fmt.Fprintf(stdout, "soak: %d connections for %s, sampling every %s\n", sc.Concurrency, sc.Duration, sc.Sample)
	if err := soakLoad(ctx, t, sc, db, dp, cfg.ProfileDir, &res, stdout); err != nil {
		return err
	}
	if res.PeakRSSKiB, err = dp.PeakRSS(); err != nil {
		return fmt.Errorf("data plane peak RSS: %w", err)
	}
	fmt.Fprintf(stdout, "soak: %d requests sent, %d failed; waiting up to %s for the archive\n", res.Sent, res.Errors, sc.DrainTimeout)
	if err := soakDrain(ctx, db, &res); err != nil {
		return err
	}

	lines, passed := res.checks()
	md := res.Markdown(lines)
	fmt.Fprintln(stdout)
	fmt.Fprintln(stdout, strings.Join(lines, "\n"))
	if sc.Out != "" {
		path := filepath.Join(root, sc.Out)
		if err := os.WriteFile(path, []byte(md), 0o644); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
		fmt.Fprintf(stdout, "soak: wrote %s\n", sc.Out)
	}
	if !passed {
		return errors.New("the soak failed a check (see above)")
	}
	return nil
}

// soakDatabase creates a fresh database on the local Postgres (PORTCULLIS_DATABASE_URL,
// else the default local server) and returns its URL and a function that drops it.
func soakDatabase(ctx context.Context) (string, func(), error) {
	server := os.Getenv("PORTCULLIS_DATABASE_URL")
	if server == "" {
		server = pglocal.DefaultURL
	}
	if err := pglocal.Ping(ctx, server); err != nil {
		return "", nil, fmt.Errorf("no PostgreSQL at %s (%v): start it, or %s, or set PORTCULLIS_DATABASE_URL",
			logging.RedactURL(server), err, pglocal.InstallHint)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "pc_soak_" + hex.EncodeToString(b[:])
	if created, err := pglocal.EnsureDatabase(ctx, server, name); err != nil || !created {
		return "", nil, fmt.Errorf("create database %s: created %t, %v", name, created, err)
	}
	drop := func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := pglocal.DropDatabase(ctx, server, name); err != nil {
			fmt.Fprintln(os.Stderr, "soak:", err)
		}
	}
	dbURL, err := pglocal.WithDatabase(server, name)
	if err != nil {
		drop()
		return "", nil, err
	}
	return dbURL, drop, nil
}

// soakGatewayYAML is the soak's configuration, applied as portcullis apply would:
// one tenant, one client on a tier whose limits are enforced but out of reach, one
// deployment of the mock in eu, and the demo's retries and breaker.
const soakGatewayYAML = `apiVersion: portcullis/v1
llm_providers:
  openai: { key_source: file, key_path: "%s" }
gateway:
  per_client_limits:
    soak_far:
      requests_per_minute: 1000000000000
      tokens_per_hour: 1000000000000000
      max_concurrent_requests: 1000000
      allowed_models: ["%s"]
      default_max_tokens: 1024
upstream_providers:
  openai:
    timeout_seconds: 30
    retry: { max_attempts: 3, backoff: exponential }
    circuit_breaker: { failure_threshold: 5, reset_timeout_seconds: 60 }
tenants:
  soak: { display_name: "Soak tenant" }
residency_rules:
  eu: { allowed_regions: [eu] }
deployments:
  openai-eu: { provider: openai, region: eu, base_url: "%s" }
models:
  %s.openai-eu: { name: %s, deployment: openai-eu, upstream_model: %s, input_usd_per_1m: 0.15, output_usd_per_1m: 0.6 }
clients:
  ` + soakClient + `: { tenant: soak, tier: soak_far, residency: eu }
`

// startSoakStack starts a control plane on dbURL with its embedded nats-server and
// audit archive, the mock upstream and one data plane (bin, a child process, for its
// RSS) in eu, and applies soakGatewayYAML once the mock serves.
func startSoakStack(ctx context.Context, tmp, dbURL, bin string) (*teststack.Stack, error) {
	upstreamKey, keyDir, keyFile, err := writeUpstreamKey(tmp)
	if err != nil {
		return nil, err
	}
	cpEnv := map[string]string{
		"PORTCULLIS_DATABASE_URL":         dbURL,
		"PORTCULLIS_LISTEN":               "127.0.0.1:0",
		"PORTCULLIS_METRICS_LISTEN":       "127.0.0.1:0",
		"PORTCULLIS_EMBEDDED_NATS_LISTEN": "127.0.0.1:0",
		"PORTCULLIS_DATA_DIR":             filepath.Join(tmp, "controlplane"),
		"PORTCULLIS_DEV_ISSUER":           "true",
		"PORTCULLIS_KEY_DIR":              keyDir,
		"PORTCULLIS_LOG_LEVEL":            "warn",
	}
	var cfgErr strings.Builder
	cpCfg, _, err := cpapp.LoadConfig([]string{}, func(k string) string { return cpEnv[k] }, &cfgErr)
	if err != nil {
		return nil, fmt.Errorf("control plane configuration: %w\n%s", err, cfgErr.String())
	}
	if !cpCfg.AuditIngest {
		return nil, errors.New("control plane configuration: the audit archive is off")
	}
	env := append(childEnv(), "PORTCULLIS_KEY_DIR="+keyDir, "PORTCULLIS_PPROF=true") // heap profiles with -profile-dir
	env = append(env, dataplaneFiles(tmp, "soak")...)
	return teststack.Start(ctx, teststack.Options{
		LogDir:       tmp,
		WaitReady:    true,
		ControlPlane: &cpCfg,
		Upstreams:    []teststack.UpstreamOptions{{Name: "mock", Mock: mockupstream.Options{Name: "soak", RequireKey: upstreamKey}}},
		BeforeDataPlanes: func(ctx context.Context, st *teststack.Stack) error {
			yaml := fmt.Sprintf(soakGatewayYAML, keyFile, benchModel, st.Upstream("mock").URL, benchModel, benchModel, benchModel)
			return applyConfig(ctx, st.AdminURL, st.AdminToken, yaml)
		},
		DataPlanes: []teststack.DataPlaneOptions{{
			Name:   "soak",
			Binary: bin,
			Env:    env,
			Config: dpapp.Config{Region: benchRegion, WorkerID: "soak-1", JWTAudience: identity.DefaultAudience},
		}},
	})
}

// adminCall sends body to the admin API's path (under /admin/v1) with token and
// returns the answer's body; any status but 200 is an error.
func adminCall(ctx context.Context, adminURL, token, path, contentType, body string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, adminURL+"/admin/v1"+path, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return nil, fmt.Errorf("POST /admin/v1%s: status %d: %.500s", path, resp.StatusCode, got)
	}
	return got, nil
}

// applyConfig applies a gateway.yaml, as portcullis apply -f does.
func applyConfig(ctx context.Context, adminURL, token, yaml string) error {
	_, err := adminCall(ctx, adminURL, token, "/config:apply", "application/yaml", yaml)
	return err
}

// mintToken has the control plane's dev issuer mint a token for client.
func mintToken(ctx context.Context, adminURL, adminToken, client string) (string, error) {
	got, err := adminCall(ctx, adminURL, adminToken, "/tokens", "application/json", `{"client_id":"`+client+`"}`)
	if err != nil {
		return "", fmt.Errorf("mint a token for %s: %w", client, err)
	}
	// {"token":"…", …}: the token is the only three-part value the answer holds.
	const key = `"token":"`
	i := strings.Index(string(got), key)
	if i < 0 {
		return "", fmt.Errorf("mint a token for %s: the answer holds no token", client)
	}
	tok, _, _ := strings.Cut(string(got[i+len(key):]), `"`)
	if strings.Count(tok, ".") != 2 {
		return "", fmt.Errorf("mint a token for %s: the answer holds no token", client)
	}
	return tok, nil
}

// archivedInRegion is how many events of the soak's region the archive holds: its
// chain's last sequence number, which the primary key makes cheap to read.
func archivedInRegion(ctx context.Context, db *pgx.Conn) (int64, error) {
	var n int64
	err := db.QueryRow(ctx, `SELECT coalesce(max(seq), 0) FROM audit_events WHERE region = $1`, benchRegion).Scan(&n)
	return n, err
}

// soakLoad runs sc.Concurrency workers, each sending one chat completion after
// another until sc.Duration has passed (a request under way when it does is
// finished, never cancelled, so every request sent has its answer and its audit
// event), and samples the data plane's RSS and the archive every sc.Sample.
// With profileDir set, it saves the data plane's heap profile there as the settle
// time ends (heap-settled.pb.gz) and as the load ends (heap-end.pb.gz), for go tool
// pprof -base.
func soakLoad(ctx context.Context, t target, sc soakConfig, db *pgx.Conn, dp *teststack.DataPlane, profileDir string, res *soakResult, log io.Writer) error {
	body := requestBody(false)
	metrics := &http.Client{}
	defer metrics.CloseIdleConnections()
	start := time.Now()
	deadline := start.Add(sc.Duration)
	var sent, errs atomic.Int64
	var firstErr sync.Once
	var wg sync.WaitGroup
	for range sc.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				err := do(context.WithoutCancel(ctx), t, false, body)
				sent.Add(1)
				if err != nil {
					errs.Add(1)
					firstErr.Do(func() { res.FirstError = err.Error() })
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	sample := func() error {
		var mem [3]int64
		for i, field := range []string{"VmRSS", "RssAnon", "RssFile"} {
			var err error
			if mem[i], err = dp.MemoryKiB(field); err != nil {
				return fmt.Errorf("data plane %s: %w", field, err)
			}
		}
		archived, err := archivedInRegion(ctx, db)
		if err != nil {
			return fmt.Errorf("read the archive: %w", err)
		}
		page, err := scrapeMetrics(ctx, metrics, dp.MetricsURL)
		if err != nil {
			return err
		}
		g, err := gauges(page, "go_memstats_heap_inuse_bytes", "go_goroutines", "go_memstats_next_gc_bytes")
		if err != nil {
			return err
		}
		s := soakSample{At: time.Since(start), RSSKiB: mem[0], AnonKiB: mem[1], FileKiB: mem[2], Sent: sent.Load(), Errors: errs.Load(), Archived: archived,
			HeapInUse: g["go_memstats_heap_inuse_bytes"], Goroutines: g["go_goroutines"], NextGC: g["go_memstats_next_gc_bytes"]}
		res.Samples = append(res.Samples, s)
		fmt.Fprintf(log, "soak: %7s  RSS %6.1f MiB (anon %5.1f, file %4.1f)  heap %5.1f MiB, next GC at %5.1f  %4.0f goroutines  %9d sent  %d errors  %9d archived\n",
			s.At.Round(time.Second), kib(s.RSSKiB), kib(s.AnonKiB), kib(s.FileKiB), s.HeapInUse/(1<<20), s.NextGC/(1<<20), s.Goroutines, s.Sent, s.Errors, s.Archived)
		return nil
	}
	heap := func(name string) error {
		if profileDir == "" {
			return nil
		}
		if err := os.MkdirAll(profileDir, 0o755); err != nil {
			return err
		}
		return saveURL(ctx, metrics, dp.MetricsURL+"/debug/pprof/heap", filepath.Join(profileDir, name))
	}
	tick := time.NewTicker(sc.Sample)
	defer tick.Stop()
	second := time.NewTicker(time.Second)
	defer second.Stop()
	settled := time.After(sc.Settle)
	var sampleErr error
loop:
	for {
		select {
		case <-done:
			break loop
		case <-settled:
			if sampleErr == nil {
				sampleErr = heap("heap-settled.pb.gz")
			}
		case <-tick.C:
			if sampleErr == nil {
				sampleErr = sample()
			}
		case <-second.C:
			if kb, err := dp.RSS(); err != nil {
				sampleErr = cmp.Or(sampleErr, fmt.Errorf("data plane RSS: %w", err))
			} else {
				res.RSS = append(res.RSS, rssPoint{At: time.Since(start), KiB: kb})
			}
		}
	}
	if sampleErr == nil {
		sampleErr = heap("heap-end.pb.gz")
	}
	res.Elapsed = time.Since(start)
	res.Sent, res.Errors = sent.Load(), errs.Load()
	if err := ctx.Err(); err != nil {
		return err
	}
	if sampleErr != nil {
		return sampleErr
	}
	if n := len(res.Samples); n > 0 && res.Elapsed-res.Samples[n-1].At < sc.Sample/2 {
		return nil // the last tick was as the load ended
	}
	return sample() // the final one, as the load ends
}

// saveURL writes what a GET of url answers to path.
func saveURL(ctx context.Context, hc *http.Client, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// soakDrain waits until the archive holds an event for every request sent, or
// DrainTimeout passes, then counts the client's events and their request ids.
func soakDrain(ctx context.Context, db *pgx.Conn, res *soakResult) error {
	start := time.Now()
	for {
		n, err := archivedInRegion(ctx, db)
		if err != nil {
			return fmt.Errorf("read the archive: %w", err)
		}
		if n >= res.Sent {
			break
		}
		if time.Since(start) > res.Config.DrainTimeout {
			res.DrainFailed = true
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	res.DrainTime = time.Since(start)
	err := db.QueryRow(ctx, `SELECT count(*), count(DISTINCT request_id) FROM audit_events WHERE client_id = $1`, soakClient).
		Scan(&res.Archived, &res.Distinct)
	if err != nil {
		return fmt.Errorf("count the archive: %w", err)
	}
	return nil
}

// Markdown is the soak's report, docs/soak.md.
func (r soakResult) Markdown(checks []string) string {
	var b strings.Builder
	m := r.Machine
	b.WriteString("# Soak\n\n")
	b.WriteString("Generated by `make soak` (`go run ./tests/bench -soak 10m`); rerun it to refresh this page.\n\n")
	b.WriteString("## What runs\n\n")
	b.WriteString("- A control plane on a fresh database of the local Postgres, with its embedded nats-server and its audit " +
		"archive on; one data plane, built from source and run as its own process (its RSS is read from `/proc`), " +
		"in region eu; the mock upstream. The configuration is applied through the admin API as `portcullis apply` " +
		"would: one client on a tier whose global limits are enforced but out of reach, one deployment with the demo's " +
		"retries and circuit breaker.\n")
	fmt.Fprintf(&b, "- %d connections send non-streaming chat completions back to back for %s, JWT auth, limits, "+
		"residency routing, breakers and the audit spool all on. A request under way when the time is up is finished, "+
		"never cancelled. Every %s the run samples the data plane's RSS and the archive's size.\n",
		r.Config.Concurrency, r.Config.Duration, r.Config.Sample)
	fmt.Fprintf(&b, "- After the load it waits (up to %s) for the archive to hold an event for each request sent, "+
		"then counts the client's events and their distinct request ids in Postgres.\n", r.Config.DrainTimeout)
	fmt.Fprintf(&b, "- RSS is read once a second and judged after the first %s (connection pools, buffers and the GC's "+
		"target settle then), by the mean of each minute: a single reading lands anywhere on the GC's sawtooth (the heap grows "+
		"to GOGC%% over the live heap, then drops), the mean of a minute is the level a leak would raise. Flat means the "+
		"spread (max − min) / min of those means is at most %.0f%%; the single readings' range is shown too.\n\n",
		r.Config.Settle, 100*soakRSSSpread)
	fmt.Fprintf(&b, "Machine: %s, %d cores, %s, Linux %s, %s; commit %s; load average before the run %s; %s.\n\n",
		m.CPU, m.Cores, m.OSArch, m.Kernel, m.Go, m.Commit, m.LoadAvg, m.Date.Format("2006-01-02 15:04 UTC"))
	b.WriteString("## Result\n\n")
	for _, c := range checks {
		b.WriteString("- " + c + "\n")
	}
	rps := float64(r.Sent) / r.Elapsed.Seconds()
	fmt.Fprintf(&b, "\n%d requests in %s: %.0f req/s. Peak RSS %.1f MiB.\n\n", r.Sent, r.Elapsed.Round(time.Second), rps, kib(r.PeakRSSKiB))
	if m := r.rssMeans(); len(m) > 0 {
		parts := make([]string, len(m))
		for i, v := range m {
			parts[i] = fmt.Sprintf("%.1f", v/1024)
		}
		fmt.Fprintf(&b, "Mean RSS of each minute after the first %s, MiB: %s.\n\n", r.Config.Settle, strings.Join(parts, ", "))
	}
	b.WriteString("## Samples\n\n")
	t := table{head: []string{"at", "RSS (MiB)", "anon", "file", "Go heap in use (MiB)", "next GC at (MiB)", "goroutines", "sent", "errors", "archived", "archive behind", "req/s since the last"}}
	var prev soakSample
	for _, s := range r.Samples {
		d := (s.At - prev.At).Seconds()
		t.rows = append(t.rows, []string{
			s.At.Round(time.Second).String(), fmt.Sprintf("%.1f", kib(s.RSSKiB)), fmt.Sprintf("%.1f", kib(s.AnonKiB)),
			fmt.Sprintf("%.1f", kib(s.FileKiB)), fmt.Sprintf("%.1f", s.HeapInUse/(1<<20)), fmt.Sprintf("%.1f", s.NextGC/(1<<20)),
			fmt.Sprintf("%.0f", s.Goroutines), fmt.Sprint(s.Sent), fmt.Sprint(s.Errors),
			fmt.Sprint(s.Archived), fmt.Sprint(s.Sent - s.Archived), fmt.Sprintf("%.0f", float64(s.Sent-prev.Sent)/d),
		})
		prev = s
	}
	b.WriteString(t.markdown())
	return b.String()
}
