package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/pprof/profile"
)

// The profile phase: while profileConcurrency workers send chat completions to one
// gateway target, the data plane records a CPU profile for profileWindow, then an
// allocation profile for another profileWindow (net/http/pprof's delta profiles).
// Requests are counted over each window, so that the profile reads per request.
const (
	profileConcurrency = 16
	profileWindow      = 5 * time.Second
)

// targetProfile is what the profile phase recorded for one target.
type targetProfile struct {
	Target string
	// CPURequests and AllocRequests are the requests answered during each window.
	CPURequests, AllocRequests int64
	CPU, Allocs                *profile.Profile
}

// profilePhase profiles the data plane under load on each of targets in turn. When
// dir is not empty the raw profiles are written there too (NAME.cpu.pb.gz and
// NAME.allocs.pb.gz, for go tool pprof).
func profilePhase(ctx context.Context, st *stack, targets []target, dir string) ([]targetProfile, error) {
	var out []targetProfile
	for _, t := range targets {
		p := targetProfile{Target: t.Name}
		var err error
		p.CPU, p.CPURequests, err = profileUnderLoad(ctx, st, t, "profile")
		if err != nil {
			return nil, fmt.Errorf("CPU profile of %s: %w", t.Name, err)
		}
		p.Allocs, p.AllocRequests, err = profileUnderLoad(ctx, st, t, "allocs")
		if err != nil {
			return nil, fmt.Errorf("allocation profile of %s: %w", t.Name, err)
		}
		if dir != "" {
			if err := saveProfiles(dir, p); err != nil {
				return nil, err
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// profileUnderLoad fetches /debug/pprof/KIND?seconds=N while load runs against t and
// returns the profile and the requests answered while it was recorded.
func profileUnderLoad(ctx context.Context, st *stack, t target, kind string) (*profile.Profile, int64, error) {
	body := requestBody(false)
	data, answered, err := fetchUnderLoad(ctx, st, profileConcurrency, kind, func(ctx context.Context) error { return do(ctx, t, false, body) })
	if err != nil {
		return nil, 0, err
	}
	prof, err := profile.Parse(bytes.NewReader(data))
	if err != nil {
		return nil, 0, fmt.Errorf("parse the %s profile: %w", kind, err)
	}
	return prof, answered, nil
}

// traceWindow is how long -trace-dir's execution trace runs.
const traceWindow = 2 * time.Second

// traceAtOne saves two execution traces of the data plane (go tool trace): one
// while one connection sends chat completions to t back to back, and one while it
// streams answers from the paced mock one after another (time to first token).
// They show where a request's wall time goes at concurrency 1, scheduler and
// network waits included, which a CPU profile does not.
func traceAtOne(ctx context.Context, st *stack, t target, dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	chat := requestBody(false)
	paced := []byte(`{"model":"` + pacedModel + `","messages":[{"role":"user","content":"` + prompt + `"}],"max_tokens":64,"stream":true}`)
	var saved []string
	for _, x := range []struct {
		name string
		load func(context.Context) error
	}{
		{"c1", func(ctx context.Context) error { return do(ctx, t, false, chat) }},
		{"ttft", func(ctx context.Context) error { _, _, err := firstToken(ctx, t, paced); return err }},
	} {
		data, answered, err := fetchUnderLoad(ctx, st, 1, "trace", x.load)
		if err != nil {
			return nil, err
		}
		path := filepath.Join(dir, fileSafe(t.Name)+"."+x.name+".trace")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return nil, err
		}
		saved = append(saved, fmt.Sprintf("%s (%d requests in %s)", path, answered, traceWindow))
	}
	return saved, nil
}

// fetchUnderLoad fetches /debug/pprof/KIND?seconds=N (profileWindow, or
// traceWindow for a trace) while concurrency workers call load back to back, and
// returns what it answered and the loads that succeeded meanwhile.
func fetchUnderLoad(ctx context.Context, st *stack, concurrency int, kind string, load func(context.Context) error) ([]byte, int64, error) {
	var answered atomic.Int64
	var counting atomic.Bool
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var errOnce sync.Once
	var firstErr error // set once, by errOnce
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Bounded: the load stops when the profile has been fetched, or after
			// a minute at most.
			deadline := time.Now().Add(time.Minute)
			for time.Now().Before(deadline) && ctx.Err() == nil {
				select {
				case <-stop:
					return
				default:
				}
				if err := load(ctx); err != nil {
					errOnce.Do(func() { firstErr = err })
					continue
				}
				if counting.Load() {
					answered.Add(1)
				}
			}
		}()
	}
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopLoad()

	time.Sleep(200 * time.Millisecond) // the workers' connections are open
	window := profileWindow
	if kind == "trace" {
		window = traceWindow
	}
	url := fmt.Sprintf("%s/debug/pprof/%s?seconds=%d", st.gw.MetricsURL, kind, int(window/time.Second))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, 0, err
	}
	counting.Store(true)
	resp, err := st.metrics.Do(req)
	if err != nil {
		return nil, 0, err
	}
	data, err := io.ReadAll(resp.Body)
	counting.Store(false)
	resp.Body.Close()
	if err != nil {
		return nil, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("GET %s: status %d: %.200s (is PORTCULLIS_PPROF on?)", url, resp.StatusCode, data)
	}
	stopLoad() // firstErr is settled
	if firstErr != nil {
		return nil, 0, fmt.Errorf("a request failed under the profile's load: %w", firstErr)
	}
	return data, answered.Load(), nil
}

func saveProfiles(dir string, p targetProfile) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	name := fileSafe(p.Target)
	for kind, prof := range map[string]*profile.Profile{"cpu": p.CPU, "allocs": p.Allocs} {
		var buf bytes.Buffer
		if err := prof.Write(&buf); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name+"."+kind+".pb.gz"), buf.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// fileSafe is s with every byte outside [a-z0-9-] replaced by '-'.
func fileSafe(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			b[i] = '-'
		}
	}
	return string(b)
}

// profileAndSummarize runs the profile phase on the limits-off and limits-on
// targets, summarizes each, and saves the summaries if cfg asks.
func profileAndSummarize(ctx context.Context, st *stack, cfg config, host machine, root string, stdout io.Writer) ([]profileSummary, error) {
	fmt.Fprintf(stdout, "bench: CPU and allocation profiles of the data plane, %s each at c=%d\n", profileWindow, profileConcurrency)
	raw, err := profilePhase(ctx, st, []target{st.gateway, st.limited}, cfg.ProfileDir)
	if err != nil {
		return nil, err
	}
	var out []profileSummary
	for _, p := range raw {
		built := host
		if cfg.DataplaneBin != "" { // the breakdown is of that binary's commit, not of this checkout's
			built.Commit = cfg.DataplaneLabel
		}
		s, err := summarize(p, built)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(stdout, "bench: %s: %.0f µs of CPU and %.1f KiB allocated per request (%d and %d requests)\n",
			p.Target, s.CPUMicros[stageTotal], s.AllocBytes[stageTotal]/1024, p.CPURequests, p.AllocRequests)
		out = append(out, s)
	}
	if cfg.ProfileSave != "" {
		data, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(root, cfg.ProfileSave), append(data, '\n'), 0o644); err != nil {
			return nil, fmt.Errorf("save the profile breakdown: %w", err)
		}
		fmt.Fprintf(stdout, "bench: saved the breakdown to %s\n", cfg.ProfileSave)
	}
	return out, nil
}

// loadProfileBefore reads a breakdown saved with -profile-save; a missing file is
// no comparison, not an error.
func loadProfileBefore(root, path string) ([]profileSummary, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(filepath.Join(root, path))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []profileSummary
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}
