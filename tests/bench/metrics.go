package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Metric names the data plane's limiter exposes on /metrics.
const (
	metricKVOps     = "portcullis_limits_kv_ops_total"
	metricAdmitted  = "portcullis_limits_admitted_total"
	metricLeases    = "portcullis_limits_lease_acquisitions_total"
	metricKVSeconds = "portcullis_limits_kv_op_seconds"
)

// KV operations and lease kinds, as the limiter labels them.
var (
	kvOps      = []string{"read", "cas", "cas_conflict"}
	leaseKinds = []string{"requests", "tokens", "concurrency"}
)

// limitsCounters are the limiter's counters at one moment, or the difference between
// two moments (see sub).
type limitsCounters struct {
	KVOps     map[string]float64 // by op, results ok and error together
	KVErrors  map[string]float64 // KV operations with result="error", by op
	Admitted  float64            // admitted requests of the benchmark's limited client
	Leases    map[string]float64 // by kind
	KVSeconds float64            // sum of the KV latency histogram, every op
	KVCount   float64            // count of the KV latency histogram, every op
	// Timing holds the sums and counts (name_sum, name_count) of the data plane's
	// own timing histograms (timingMetrics), every series together: its view of
	// where a request's time went.
	Timing map[string]float64
}

// timingMetrics are the data plane's histograms of a request's time: in the
// handler, to the upstream's first byte, and the difference (its overhead).
var timingMetrics = []string{
	"portcullis_dataplane_http_request_duration_seconds",
	"portcullis_upstream_first_byte_seconds",
	"portcullis_dataplane_gateway_overhead_seconds",
}

// TimingMean is the mean of the timing histogram name over c, false if it saw no request.
func (c limitsCounters) TimingMean(name string) (time.Duration, bool) {
	n := c.Timing[name+"_count"]
	if n <= 0 {
		return 0, false
	}
	return time.Duration(c.Timing[name+"_sum"] / n * float64(time.Second)), true
}

// TotalKVOps is the number of KV operations on PC_LIMITS, of every op and result.
func (c limitsCounters) TotalKVOps() float64 { return sumMap(c.KVOps) }

// TotalKVErrors is the number of KV operations with result="error", of every op.
func (c limitsCounters) TotalKVErrors() float64 { return sumMap(c.KVErrors) }

// TotalLeases is the number of leases taken, of every kind.
func (c limitsCounters) TotalLeases() float64 { return sumMap(c.Leases) }

func sumMap(m map[string]float64) float64 {
	var n float64
	for _, v := range m {
		n += v
	}
	return n
}

// OpsPerAdmitted is TotalKVOps divided by Admitted; ok is false when nothing was
// admitted.
func (c limitsCounters) OpsPerAdmitted() (ratio float64, ok bool) {
	if c.Admitted <= 0 {
		return 0, false
	}
	return c.TotalKVOps() / c.Admitted, true
}

// MeanKVOp is the mean latency of a KV operation; ok is false when there was none.
func (c limitsCounters) MeanKVOp() (d time.Duration, ok bool) {
	if c.KVCount <= 0 {
		return 0, false
	}
	return time.Duration(c.KVSeconds / c.KVCount * float64(time.Second)), true
}

// sub returns c minus before.
func (c limitsCounters) sub(before limitsCounters) limitsCounters { return c.plus(before, -1) }

// add returns c plus other.
func (c limitsCounters) add(other limitsCounters) limitsCounters { return c.plus(other, 1) }

// plus returns c + f·o.
func (c limitsCounters) plus(o limitsCounters, f float64) limitsCounters {
	return limitsCounters{
		KVOps:     plusMap(c.KVOps, o.KVOps, f),
		KVErrors:  plusMap(c.KVErrors, o.KVErrors, f),
		Admitted:  c.Admitted + f*o.Admitted,
		Leases:    plusMap(c.Leases, o.Leases, f),
		KVSeconds: c.KVSeconds + f*o.KVSeconds,
		KVCount:   c.KVCount + f*o.KVCount,
		Timing:    plusMap(c.Timing, o.Timing, f),
	}
}

// plusMap returns a + f·b, key by key.
func plusMap(a, b map[string]float64, f float64) map[string]float64 {
	out := make(map[string]float64, len(a)+len(b))
	for k, v := range a {
		out[k] += v
	}
	for k, v := range b {
		out[k] += f * v
	}
	return out
}

// limitsFromMetrics picks the limiter's counters out of a /metrics page; admitted
// counts client's admissions only. A series the page lacks counts as zero: a
// Prometheus counter vector shows no series until its first increment.
func limitsFromMetrics(page, client string) (limitsCounters, error) {
	samples, err := parseMetrics(page)
	if err != nil {
		return limitsCounters{}, err
	}
	c := limitsCounters{KVOps: map[string]float64{}, KVErrors: map[string]float64{}, Leases: map[string]float64{}, Timing: map[string]float64{}}
	for _, s := range samples {
		if base, ok := strings.CutSuffix(s.Name, "_sum"); ok && slices.Contains(timingMetrics, base) {
			c.Timing[s.Name] += s.Value
		} else if base, ok := strings.CutSuffix(s.Name, "_count"); ok && slices.Contains(timingMetrics, base) {
			c.Timing[s.Name] += s.Value
		}
		switch s.Name {
		case metricKVOps:
			c.KVOps[s.Labels["op"]] += s.Value
			if s.Labels["result"] == "error" {
				c.KVErrors[s.Labels["op"]] += s.Value
			}
		case metricAdmitted:
			if s.Labels["client"] == client {
				c.Admitted += s.Value
			}
		case metricLeases:
			c.Leases[s.Labels["kind"]] += s.Value
		case metricKVSeconds + "_sum":
			c.KVSeconds += s.Value
		case metricKVSeconds + "_count":
			c.KVCount += s.Value
		}
	}
	return c, nil
}

// scrapeLimits reads the data plane's /metrics at baseURL, its metrics listener's,
// and returns its limiter counters for client (whose series carry the client label:
// PORTCULLIS_METRICS_CLIENT_LABELS=true).
func scrapeLimits(ctx context.Context, hc *http.Client, baseURL, client string) (limitsCounters, error) {
	page, err := scrapeMetrics(ctx, hc, baseURL)
	if err != nil {
		return limitsCounters{}, err
	}
	c, err := limitsFromMetrics(page, client)
	if err != nil {
		return limitsCounters{}, fmt.Errorf("parse /metrics: %w", err)
	}
	return c, nil
}

// scrapeMetrics reads the /metrics page at baseURL.
func scrapeMetrics(ctx context.Context, hc *http.Client, baseURL string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("scrape /metrics: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("scrape /metrics: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("scrape /metrics: status %d", resp.StatusCode)
	}
	return string(body), nil
}

// gauges are the values of the unlabelled series names holds on a /metrics page.
func gauges(page string, names ...string) (map[string]float64, error) {
	samples, err := parseMetrics(page)
	if err != nil {
		return nil, fmt.Errorf("parse /metrics: %w", err)
	}
	out := map[string]float64{}
	for _, s := range samples {
		if len(s.Labels) == 0 && slices.Contains(names, s.Name) {
			out[s.Name] = s.Value
		}
	}
	for _, n := range names {
		if _, ok := out[n]; !ok {
			return nil, fmt.Errorf("/metrics has no %s", n)
		}
	}
	return out, nil
}

// sample is one line of the Prometheus text exposition format.
type sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// parseMetrics parses the Prometheus text exposition format (version 0.0.4), enough
// for what the data plane writes: comment lines, then `name{label="value",...} value`
// with an optional timestamp.
func parseMetrics(page string) ([]sample, error) {
	var out []sample
	for i, line := range strings.Split(page, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s, err := parseSample(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		out = append(out, s)
	}
	return out, nil
}

func parseSample(line string) (sample, error) {
	s := sample{Labels: map[string]string{}}
	end := strings.IndexAny(line, "{ ")
	if end <= 0 {
		return s, fmt.Errorf("no metric name in %q", line)
	}
	s.Name, line = line[:end], line[end:]
	if strings.HasPrefix(line, "{") {
		rest, err := parseLabels(line[1:], s.Labels)
		if err != nil {
			return s, fmt.Errorf("metric %s: %w", s.Name, err)
		}
		line = rest
	}
	fields := strings.Fields(line)
	if len(fields) < 1 || len(fields) > 2 {
		return s, fmt.Errorf("metric %s: want a value and an optional timestamp, got %q", s.Name, line)
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return s, fmt.Errorf("metric %s: value: %w", s.Name, err)
	}
	s.Value = v
	return s, nil
}

// parseLabels reads `name="value",...}` into labels and returns what follows the
// closing brace.
func parseLabels(in string, labels map[string]string) (string, error) {
	for {
		in = strings.TrimLeft(in, " ,")
		if strings.HasPrefix(in, "}") {
			return in[1:], nil
		}
		eq := strings.Index(in, "=")
		if eq <= 0 || len(in) < eq+2 || in[eq+1] != '"' {
			return "", errors.New("malformed label set")
		}
		name := strings.TrimSpace(in[:eq])
		in = in[eq+2:]
		var val strings.Builder
		closed := false
		for i := 0; i < len(in); i++ {
			ch := in[i]
			if ch == '\\' && i+1 < len(in) {
				i++
				switch in[i] {
				case 'n':
					val.WriteByte('\n')
				default:
					val.WriteByte(in[i])
				}
				continue
			}
			if ch == '"' {
				in, closed = in[i+1:], true
				break
			}
			val.WriteByte(ch)
		}
		if !closed {
			return "", fmt.Errorf("label %s: unterminated value", name)
		}
		labels[name] = val.String()
	}
}
