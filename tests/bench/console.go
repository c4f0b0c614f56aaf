package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// consoleBenchTime is how many requests each console page gets.
const consoleBenchTime = "20x"

// consolePage is one page's time from BenchmarkConsolePages.
type consolePage struct {
	Name string
	Mean time.Duration // per request, over loopback: server time and a little client time
}

// consoleResult is the console phase: the pages' times and what the benchmark
// said of its seed.
type consoleResult struct {
	Pages []consolePage
	Seed  string // the benchmark's log line about what it seeded and how long it took
}

var (
	benchLine = regexp.MustCompile(`^BenchmarkConsolePages/(\S+?)(-\d+)?\s+\d+\s+(\d+(?:\.\d+)?) ns/op`)
	seedLine  = regexp.MustCompile(`seeded .*`)
)

// consolePhase runs the control plane's BenchmarkConsolePages (10k clients and 1M
// archived events, seeded through the archive into a fresh database) in a child
// `go test`, and reads each page's time from its output.
func consolePhase(ctx context.Context, root string) (consoleResult, error) {
	cmd := exec.CommandContext(ctx, "go", "test", "./controlplane/app", "-run", "^$", "-bench", "^BenchmarkConsolePages$",
		"-benchtime", consoleBenchTime, "-count", "1", "-v")
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return consoleResult{}, fmt.Errorf("console benchmark: %w\n%s", err, out.String())
	}
	return parseConsoleBench(out.String())
}

func parseConsoleBench(out string) (consoleResult, error) {
	var r consoleResult
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if m := benchLine.FindStringSubmatch(line); m != nil {
			ns, err := strconv.ParseFloat(m[3], 64)
			if err != nil {
				return r, fmt.Errorf("console benchmark line %q: %w", line, err)
			}
			r.Pages = append(r.Pages, consolePage{Name: m[1], Mean: time.Duration(ns)})
		} else if m := seedLine.FindString(line); m != "" && r.Seed == "" {
			r.Seed = m
		}
	}
	if len(r.Pages) == 0 {
		return r, fmt.Errorf("console benchmark: no page timings in its output:\n%s", out)
	}
	return r, nil
}

// consoleBudget is the bound on a page's server time.
const consoleBudget = 200 * time.Millisecond

// table is the pages' times against the budget.
func (c consoleResult) table() table {
	t := table{head: []string{"page", "mean per request", "within 200 ms"}}
	for _, p := range c.Pages {
		ok := "yes"
		if p.Mean > consoleBudget {
			ok = "**no**"
		}
		t.rows = append(t.rows, []string{p.Name, fmtDur(p.Mean), ok})
	}
	return t
}
