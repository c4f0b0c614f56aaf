package api

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// latencyMetrics are the request path's latency histograms, beside the HTTP
// metrics' request duration: the gateway's own share of a request's time, and the
// time to the first token of a streamed answer. A nil *latencyMetrics records
// nothing. Safe for concurrent use.
type latencyMetrics struct {
	// overhead has a histogram per proxied route, made once in New: read-only after.
	overhead map[string]prometheus.Observer
	ttft     *prometheus.HistogramVec
	// ttftOf caches ttft's histogram of each deployment (string → prometheus.Observer),
	// so that a request does not look its labels up.
	ttftOf sync.Map
}

// newLatencyMetrics registers the histograms with reg, with the overhead's series
// of every route in routes.
func newLatencyMetrics(reg prometheus.Registerer, routes []string) *latencyMetrics {
	overhead := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "portcullis_dataplane_gateway_overhead_seconds",
		Help: "Time the gateway spent on a request that reached an upstream, by route: the request's whole time minus its " +
			"upstream attempts (from sending each to the end of its answer's relay) and the backoff waits between them. " +
			"It counts authentication, body reading, guardrails, limits, routing and the translation of the request.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"route"})
	m := &latencyMetrics{
		overhead: make(map[string]prometheus.Observer, len(routes)),
		ttft: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "portcullis_dataplane_time_to_first_token_seconds",
			Help: "Time from a streamed request's arrival to the first event of its answer sent to the client, by the " +
				"deployment that streamed it: what the client waits for its first token, retries and fallback included.",
			Buckets: []float64{.05, .1, .25, .5, .75, 1, 1.5, 2, 3, 5, 8, 13, 20, 30, 60},
		}, []string{"deployment"}),
	}
	for _, route := range routes {
		m.overhead[route] = overhead.WithLabelValues(route)
	}
	reg.MustRegister(overhead, m.ttft)
	return m
}

// observe records the latencies of the request ri on route, which started at
// start and took elapsed: its overhead when it made an upstream attempt, and its
// time to first token when its answer was streamed.
func (m *latencyMetrics) observe(route string, ri *requestInfo, start time.Time, elapsed time.Duration) {
	if m == nil || ri.attempts == 0 {
		return
	}
	if h, ok := m.overhead[route]; ok {
		h.Observe(max(elapsed-ri.upstreamTime, 0).Seconds())
	}
	if !ri.firstEvent.IsZero() && ri.deployment != "" {
		m.ttftFor(ri.deployment).Observe(ri.firstEvent.Sub(start).Seconds())
	}
}

// ttftFor is the time-to-first-token histogram of deployment.
func (m *latencyMetrics) ttftFor(deployment string) prometheus.Observer {
	if h, ok := m.ttftOf.Load(deployment); ok {
		return h.(prometheus.Observer)
	}
	h, _ := m.ttftOf.LoadOrStore(deployment, m.ttft.WithLabelValues(deployment))
	return h.(prometheus.Observer)
}
