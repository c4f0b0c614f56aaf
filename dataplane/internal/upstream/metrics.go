package upstream

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
)

// Metrics are the upstream calls' Prometheus series, shared by every Target of a
// worker. The zero value is not usable; a nil *Metrics records nothing.
type Metrics struct {
	breaker    *prometheus.GaugeVec
	attempts   *prometheus.CounterVec
	retries    *prometheus.CounterVec
	refused    *prometheus.CounterVec
	budget     *prometheus.CounterVec
	errRate    *prometheus.GaugeVec
	latency    *prometheus.GaugeVec
	keyRetries *prometheus.CounterVec
	firstByte  *prometheus.HistogramVec
}

// NewMetrics registers the series with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	const ns = "portcullis_upstream"
	m := &Metrics{
		breaker: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "breaker_state",
			Help: "Circuit breaker state per deployment: 0 closed, 1 half-open, 2 open."}, []string{"deployment"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "attempts_total",
			Help: "Attempts at a deployment by outcome (success, failure, ignored)."}, []string{"deployment", "outcome"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "retries_total",
			Help: "Retries made against a deployment."}, []string{"deployment"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "breaker_rejections_total",
			Help: "Calls refused without reaching the upstream because the breaker was open."}, []string{"deployment"}),
		budget: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "retry_budget_exhausted_total",
			Help: "Retries not made because the deployment's retry budget was spent."}, []string{"deployment"}),
		errRate: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "error_rate",
			Help: "Share of failed attempts over the fallback window, per deployment."}, []string{"deployment"}),
		latency: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "latency_seconds",
			Help: "Recent time to an answer's headers per deployment (moving average), which load balancing prefers low."}, []string{"deployment"}),
		keyRetries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "key_retries_total",
			Help: "Requests retried once with the other valid key after the upstream refused the current one (401)."}, []string{"deployment"}),
		firstByte: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "first_byte_seconds",
			Help: "Time from sending an attempt to the status and headers of its answer (the first byte), per deployment, " +
				"for answers that were not 429 or 5xx; not the whole attempt (a streamed answer's body comes later). " +
				"For a non-streamed answer the upstream has usually generated it by then.",
			Buckets: []float64{.025, .05, .1, .25, .5, 1, 2, 4, 8, 15, 30, 60, 120}}, []string{"deployment"}),
	}
	for _, c := range []prometheus.Collector{m.breaker, m.attempts, m.retries, m.refused, m.budget, m.errRate, m.latency, m.keyRetries, m.firstByte} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) breakerChanged(deployment string, _, to gobreaker.State) {
	if m != nil {
		m.breaker.WithLabelValues(deployment).Set(float64(to))
	}
}

func (m *Metrics) attempt(deployment string, o Outcome) {
	if m != nil {
		m.attempts.WithLabelValues(deployment, [...]string{"success", "failure", "ignored"}[o]).Inc()
	}
}

func (m *Metrics) retry(deployment string) {
	if m != nil {
		m.retries.WithLabelValues(deployment).Inc()
	}
}

func (m *Metrics) rejected(deployment string) {
	if m != nil {
		m.refused.WithLabelValues(deployment).Inc()
	}
}

func (m *Metrics) budgetExhausted(deployment string) {
	if m != nil {
		m.budget.WithLabelValues(deployment).Inc()
	}
}

func (m *Metrics) errorRate(deployment string, rate float64) {
	if m != nil {
		m.errRate.WithLabelValues(deployment).Set(rate)
	}
}

func (m *Metrics) latencyObserved(deployment string, seconds float64) {
	if m != nil {
		m.latency.WithLabelValues(deployment).Set(seconds)
	}
}

// firstByteOf is the first-byte histogram of deployment, nil for nil metrics. A
// Target takes its own once, when it is built, so that a request does not look
// its label up.
func (m *Metrics) firstByteOf(deployment string) prometheus.Observer {
	if m == nil {
		return nil
	}
	return m.firstByte.WithLabelValues(deployment)
}

func (m *Metrics) keyRetry(deployment string) {
	if m != nil {
		m.keyRetries.WithLabelValues(deployment).Inc()
	}
}
