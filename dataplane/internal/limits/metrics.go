package limits

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// opMetrics counts the limiter's KV operations and their latency.
type opMetrics struct {
	ops     *prometheus.CounterVec
	latency *prometheus.HistogramVec
}

func (m *opMetrics) observe(op string, start time.Time, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.ops.WithLabelValues(op, result).Inc()
	m.latency.WithLabelValues(op).Observe(time.Since(start).Seconds())
}

// metrics are the limiter's Prometheus series.
type metrics struct {
	kv        *opMetrics
	admitted  *prometheus.CounterVec // by client
	denied    *prometheus.CounterVec // by client and reason
	leases    *prometheus.CounterVec // by kind
	failOpen  prometheus.Counter
	available prometheus.Gauge
	workers   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns = "portcullis_limits"
	m := &metrics{
		kv: &opMetrics{
			ops: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "kv_ops_total",
				Help: "KV operations on PC_LIMITS by op (read, cas, cas_conflict) and result."}, []string{"op", "result"}),
			latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "kv_op_seconds",
				Help:    "Latency of KV operations on PC_LIMITS.",
				Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}}, []string{"op"}),
		},
		admitted: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "admitted_total",
			Help: "Requests admitted by the limiter, by client."}, []string{"client"}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "denied_total",
			Help: "Requests denied by the limiter, by client and reason (requests, tokens, concurrency, unavailable)."}, []string{"client", "reason"}),
		leases: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "lease_acquisitions_total",
			Help: "Budget leases taken from PC_LIMITS, by kind (requests, tokens, concurrency)."}, []string{"kind"}),
		failOpen: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "fail_open_admissions_total",
			Help: "Requests admitted without the global counters because NATS was unreachable (fail_open)."}),
		available: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "available",
			Help: "1 while the global limit counters are reachable, 0 while NATS or PC_LIMITS is not."}),
		workers: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "live_workers",
			Help: "Live data-plane workers seen in PC_WORKERS, used to size leases."}),
	}
	for _, c := range []prometheus.Collector{m.kv.ops, m.kv.latency, m.admitted, m.denied, m.leases, m.failOpen, m.available, m.workers} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
