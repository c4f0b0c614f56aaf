package limits

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestMetricsClientLabels: without client labels the admitted and denied series
// are aggregates that never carry a client id; with them, they are by client.
func TestMetricsClientLabels(t *testing.T) {
	for _, labels := range []bool{false, true} {
		reg := prometheus.NewRegistry()
		m, err := newMetrics(reg, labels)
		if err != nil {
			t.Fatal(err)
		}
		m.admit("client-a")
		m.admit("client-b")
		m.deny("client-a", "tokens")
		var page strings.Builder
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, metric := range mf.GetMetric() {
				page.WriteString(mf.GetName())
				for _, l := range metric.GetLabel() {
					page.WriteString(" " + l.GetName() + "=" + l.GetValue())
				}
				page.WriteString("\n")
			}
		}
		named := strings.Contains(page.String(), "client-a")
		if named != labels {
			t.Errorf("client labels %v: a client id appears: %v\n%s", labels, named, page.String())
		}
		if !labels {
			if got := testutil.ToFloat64(m.admitted.WithLabelValues()); got != 2 {
				t.Errorf("aggregate admitted = %v, want 2", got)
			}
			if got := testutil.ToFloat64(m.denied.WithLabelValues("tokens")); got != 1 {
				t.Errorf("aggregate denied for tokens = %v, want 1", got)
			}
		} else if got := testutil.ToFloat64(m.admitted.WithLabelValues("client-a")); got != 1 {
			t.Errorf("admitted of client-a = %v, want 1", got)
		}
	}
}
