package main

import (
	"maps"
	"math"
	"strings"
	"testing"
	"time"
)

func TestParseSample(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		want    sample
		wantErr string
	}{
		{name: "no labels", line: "up 1", want: sample{Name: "up", Labels: map[string]string{}, Value: 1}},
		{
			name: "labels",
			line: `portcullis_limits_kv_ops_total{op="cas",result="ok"} 12`,
			want: sample{Name: metricKVOps, Labels: map[string]string{"op": "cas", "result": "ok"}, Value: 12},
		},
		{
			name: "escaped value and timestamp",
			line: `m{client="a\"b\\c",x="y"} 2.5e-05 1700000000000`,
			want: sample{Name: "m", Labels: map[string]string{"client": `a"b\c`, "x": "y"}, Value: 2.5e-05},
		},
		{name: "trailing comma", line: `m{a="1",} 3`, want: sample{Name: "m", Labels: map[string]string{"a": "1"}, Value: 3}},
		{name: "infinity", line: `m_bucket{le="+Inf"} +Inf`, want: sample{Name: "m_bucket", Labels: map[string]string{"le": "+Inf"}, Value: math.Inf(1)}},
		{name: "no value", line: `m{a="1"}`, wantErr: "want a value"},
		{name: "bad value", line: `m 1x`, wantErr: "value"},
		{name: "unterminated label", line: `m{a="1} 3`, wantErr: "unterminated"},
		{name: "label without quotes", line: `m{a=1} 3`, wantErr: "malformed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseSample(tc.line)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseSample(%q) error = %v, want one containing %q", tc.line, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseSample(%q): %v", tc.line, err)
			}
			if got.Name != tc.want.Name || got.Value != tc.want.Value || !maps.Equal(got.Labels, tc.want.Labels) {
				t.Errorf("parseSample(%q) = %+v, want %+v", tc.line, got, tc.want)
			}
		})
	}
}

const pageBefore = `# HELP portcullis_limits_kv_ops_total KV operations on PC_LIMITS.
# TYPE portcullis_limits_kv_ops_total counter
portcullis_limits_kv_ops_total{op="cas",result="ok"} 4
portcullis_limits_kv_ops_total{op="read",result="ok"} 1
portcullis_limits_admitted_total{client="bench-limited"} 100
portcullis_limits_admitted_total{client="other"} 7
portcullis_limits_lease_acquisitions_total{kind="requests"} 2
portcullis_limits_kv_op_seconds_bucket{op="cas",le="0.001"} 4
portcullis_limits_kv_op_seconds_sum{op="cas"} 0.002
portcullis_limits_kv_op_seconds_count{op="cas"} 4
portcullis_limits_kv_op_seconds_sum{op="read"} 0.001
portcullis_limits_kv_op_seconds_count{op="read"} 1
portcullis_dataplane_requests_total{code="200"} 107
`

const pageAfter = `portcullis_limits_kv_ops_total{op="cas",result="ok"} 9
portcullis_limits_kv_ops_total{op="cas",result="error"} 1
portcullis_limits_kv_ops_total{op="cas_conflict",result="ok"} 2
portcullis_limits_kv_ops_total{op="read",result="ok"} 3
portcullis_limits_admitted_total{client="bench-limited"} 300
portcullis_limits_admitted_total{client="other"} 70
portcullis_limits_lease_acquisitions_total{kind="requests"} 5
portcullis_limits_lease_acquisitions_total{kind="tokens"} 4
portcullis_limits_kv_op_seconds_sum{op="cas"} 0.010
portcullis_limits_kv_op_seconds_count{op="cas"} 12
portcullis_limits_kv_op_seconds_sum{op="read"} 0.003
portcullis_limits_kv_op_seconds_count{op="read"} 3
`

func TestLimitsFromMetrics(t *testing.T) {
	before, err := limitsFromMetrics(pageBefore, limitedClient)
	if err != nil {
		t.Fatal(err)
	}
	after, err := limitsFromMetrics(pageAfter, limitedClient)
	if err != nil {
		t.Fatal(err)
	}
	d := after.sub(before)
	tests := []struct {
		name      string
		got, want float64
	}{
		{name: "admitted of the limited client only", got: d.Admitted, want: 200},
		{name: "KV ops of every op and result", got: d.TotalKVOps(), want: 10},
		{name: "cas ok and error together", got: d.KVOps["cas"], want: 6},
		{name: "cas conflicts", got: d.KVOps["cas_conflict"], want: 2},
		{name: "KV errors", got: d.TotalKVErrors(), want: 1},
		{name: "cas errors", got: d.KVErrors["cas"], want: 1},
		{name: "request leases", got: d.Leases["requests"], want: 3},
		{name: "token leases", got: d.Leases["tokens"], want: 4},
		{name: "all leases", got: d.TotalLeases(), want: 7},
		{name: "histogram count", got: d.KVCount, want: 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
	if r, ok := d.OpsPerAdmitted(); !ok || r != 0.05 {
		t.Errorf("OpsPerAdmitted = %v, %v; want 0.05, true", r, ok)
	}
	if m, ok := d.MeanKVOp(); !ok || m != time.Millisecond {
		t.Errorf("MeanKVOp = %v, %v; want 1ms, true", m, ok)
	}
	if sum := d.add(d); sum.Admitted != 400 || sum.TotalKVOps() != 20 {
		t.Errorf("d+d: admitted %v, KV ops %v; want 400, 20", sum.Admitted, sum.TotalKVOps())
	}
	if _, ok := (limitsCounters{}).OpsPerAdmitted(); ok {
		t.Error("OpsPerAdmitted of nothing admitted reports ok")
	}
}

func TestLimitsFromMetricsRejectsGarbage(t *testing.T) {
	if _, err := limitsFromMetrics("portcullis_limits_admitted_total{client=\"x\"} many\n", limitedClient); err == nil {
		t.Fatal("limitsFromMetrics accepted a non-numeric value")
	}
}

func TestReportLimits(t *testing.T) {
	res := func(target string, p50 time.Duration, c *limitsCounters) result {
		return result{cell: cell{Target: target, Concurrency: 1}, Requests: 100, P50: p50, P99: 2 * p50, RPS: 1000, Limits: c}
	}
	tests := []struct {
		name     string
		ops      float64
		readErrs float64 // over the whole run
		wantText []string
	}{
		{name: "goal met", ops: 2, wantText: []string{"0.0200", "goal ≤ 0.05: met", "No KV operation failed"}},
		{name: "goal missed", ops: 10, wantText: []string{"0.1000", "goal ≤ 0.05: NOT met"}},
		{name: "KV errors", ops: 2, readErrs: 1, wantText: []string{`result="error"`, "0 over the limits-on cells, 1 over the whole run (read: 1)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &limitsCounters{KVOps: map[string]float64{"cas": tc.ops}, Admitted: 100, Leases: map[string]float64{"requests": 1}}
			whole := limitsCounters{KVOps: map[string]float64{"read": tc.readErrs}, KVErrors: map[string]float64{"read": tc.readErrs}}
			r := report{WholeRun: whole, Results: []result{
				res(targetDirect, time.Millisecond, nil),
				res(targetGateway, 2*time.Millisecond, nil),
				res(targetLimitsOn, 3*time.Millisecond, c),
			}}
			md := r.Markdown()
			if off, on := strings.Index(md, "| chat | 1 | off |"), strings.Index(md, "| chat | 1 | on |"); off < 0 || on < off {
				t.Errorf("added-by-the-gateway rows: limits off at %d, on at %d; want off first", off, on)
			}
			for _, want := range append(tc.wantText,
				"| chat | 1 | off | +1.000 ms |", "| chat | 1 | on | +2.000 ms |", // added by the gateway
				"| chat | 1 | +1.000 ms | +2.000 ms |", // limits on minus off
				"## Global limits") {
				if !strings.Contains(md, want) {
					t.Errorf("report lacks %q:\n%s", want, md)
				}
			}
		})
	}
}

// TestReportGuardrails: the report shows what guardrails add over the gateway with
// them off, the time to first token per target with what each adds over the mock,
// and the detectors' figures against their targets.
func TestReportGuardrails(t *testing.T) {
	res := func(target string, p50 time.Duration) result {
		return result{cell: cell{Target: target, Concurrency: 1}, Requests: 100, P50: p50, P99: 2 * p50, RPS: 1000}
	}
	r := report{
		Results: []result{res(targetDirect, time.Millisecond), res(targetGateway, 2*time.Millisecond), res(targetGuarded, 5*time.Millisecond)},
		TTFT: []ttftResult{
			{Target: targetDirect, Requests: 10, P50: 5 * time.Millisecond, P99: 6 * time.Millisecond, WholeP50: 50 * time.Millisecond},
			{Target: targetGuarded, Requests: 10, P50: 11 * time.Millisecond, P99: 12 * time.Millisecond, WholeP50: 55 * time.Millisecond},
		},
	}
	r.Guardrails.Speed.AllP50 = 40 * time.Microsecond
	r.Guardrails.Speed.PIISecretsMBps = 120
	md := r.Markdown()
	for _, want := range []string{
		"## Guardrails",
		"| chat | 1 | +3.000 ms | +6.000 ms |", // guardrails on minus off
		"| gateway (guardrails on) | 10 | 11.0 ms | 12.0 ms | +6.000 ms | 55.0 ms |", // time to first token
		"target p50 ≤ 30µs: NOT met", "target ≥ 50: met",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}
