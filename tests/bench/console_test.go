package main

import (
	"strings"
	"testing"
	"time"
)

// TestParseConsoleBench reads the pages' times and the seed line from go test's
// output, and fails on output without timings.
func TestParseConsoleBench(t *testing.T) {
	out := `goos: linux
=== RUN   BenchmarkConsolePages
    console_bench_test.go:50: seeded 10000 clients in 100 tenants and 1000000 audit events in 41s
BenchmarkConsolePages/overview
BenchmarkConsolePages/overview-2         	      20	   3166531 ns/op
BenchmarkConsolePages/usage-by-client-30d-2       	      20	  250000000 ns/op
PASS`
	r, err := parseConsoleBench(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Pages) != 2 || r.Pages[0].Name != "overview" || r.Pages[0].Mean != 3166531*time.Nanosecond ||
		r.Pages[1].Name != "usage-by-client-30d" || !strings.HasPrefix(r.Seed, "seeded 10000 clients") {
		t.Fatalf("%+v", r)
	}
	if md := r.table().markdown(); !strings.Contains(md, "| usage-by-client-30d | 250.0 ms | **no** |") || !strings.Contains(md, "| overview | 3.167 ms | yes |") {
		t.Fatalf("table:\n%s", md)
	}
	if _, err := parseConsoleBench("FAIL\n"); err == nil {
		t.Fatal("no timings parsed without an error")
	}
}
