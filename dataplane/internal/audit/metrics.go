package audit

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the publisher's Prometheus series. The spool's depth, size and age are
// read from the spool at scrape time.
type metrics struct {
	published  prometheus.Counter
	pubErrors  prometheus.Counter
	dropped    prometheus.Counter
	rejected   prometheus.Counter
	sinkErrors prometheus.Counter
}

const metricsNamespace = "portcullis_audit"

func newMetrics() *metrics {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: metricsNamespace, Name: name, Help: help})
	}
	return &metrics{
		published: counter("published_total", "Audit events JetStream acknowledged (duplicates it recognised included)."),
		pubErrors: counter("publish_errors_total", "Failed attempts to publish a window of spooled audit events; the events stay in the spool and are retried."),
		dropped: counter("dropped_total", "Audit events given up before JetStream acknowledged them: "+
			"deleted by the drop_oldest full policy, or found damaged in the spool."),
		rejected:   counter("rejected_total", "Audit events refused because the spool was full (Publish returned ErrSpoolFull)."),
		sinkErrors: counter("sink_errors_total", "Failed writes of an audit event's JSON line to the sink (stdout or file)."),
	}
}

// register adds the counters and the spool gauges to reg.
func (m *metrics) register(reg prometheus.Registerer, s *spool) error {
	gauge := func(name, help string, value func(spoolStats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: metricsNamespace, Name: name, Help: help},
			func() float64 { return value(s.stats()) })
	}
	collectors := []prometheus.Collector{
		m.published, m.pubErrors, m.dropped, m.rejected, m.sinkErrors,
		gauge("spool_bytes", "Bytes of the audit spool on disk.",
			func(st spoolStats) float64 { return float64(st.bytes) }),
		gauge("spool_events", "Audit events in the spool that JetStream has not acknowledged yet.",
			func(st spoolStats) float64 { return float64(st.events) }),
		gauge("spool_oldest_age_seconds", "Age of the oldest audit event JetStream has not acknowledged yet; 0 when there is none.",
			func(st spoolStats) float64 {
				if st.oldest.IsZero() {
					return 0
				}
				return time.Since(st.oldest).Seconds()
			}),
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
