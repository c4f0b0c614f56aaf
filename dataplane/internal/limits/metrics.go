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
	admitted  *prometheus.CounterVec // by client with clientLabels; else one aggregate series
	denied    *prometheus.CounterVec // by reason, and by client with clientLabels
	leases    *prometheus.CounterVec // by kind
	failOpen  prometheus.Counter
	available prometheus.Gauge
	workers   prometheus.Gauge
	// clientLabels adds the client label to admitted and denied. Off, the series
	// have no client label at all: anyone who can scrape them cannot list the
	// clients or their traffic.
	clientLabels bool
}

// denyReasons are the values of denied's reason label.
var denyReasons = []string{KindRequests, KindTokens, KindConcurrency, "unavailable"}

func newMetrics(reg prometheus.Registerer, clientLabels bool) (*metrics, error) {
	const ns = "portcullis_limits"
	admittedLabels, deniedLabels := []string(nil), []string{"reason"}
	admittedHelp, deniedHelp := "Requests admitted by the limiter.", "Requests denied by the limiter, by reason (requests, tokens, concurrency, unavailable)."
	if clientLabels {
		admittedLabels, deniedLabels = []string{"client"}, []string{"client", "reason"}
		admittedHelp, deniedHelp = "Requests admitted by the limiter, by client.", "Requests denied by the limiter, by client and reason (requests, tokens, concurrency, unavailable)."
	}
	m := &metrics{
		clientLabels: clientLabels,
		kv: &opMetrics{
			ops: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "kv_ops_total",
				Help: "KV operations on PC_LIMITS by op (read, cas, cas_conflict) and result."}, []string{"op", "result"}),
			latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "kv_op_seconds",
				Help:    "Latency of KV operations on PC_LIMITS.",
				Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}}, []string{"op"}),
		},
		admitted: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "admitted_total",
			Help: admittedHelp}, admittedLabels),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "denied_total",
			Help: deniedHelp}, deniedLabels),
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
	if !clientLabels { // the aggregate series exist from the start: a rate of 0, not absent
		m.admitted.WithLabelValues()
		for _, r := range denyReasons {
			m.denied.WithLabelValues(r)
		}
	}
	return m, nil
}

// admit counts a request of client admitted.
func (m *metrics) admit(client string) {
	if m.clientLabels {
		m.admitted.WithLabelValues(client).Inc()
		return
	}
	m.admitted.WithLabelValues().Inc()
}

// deny counts a request of client denied for reason.
func (m *metrics) deny(client, reason string) {
	if m.clientLabels {
		m.denied.WithLabelValues(client, reason).Inc()
		return
	}
	m.denied.WithLabelValues(reason).Inc()
}
