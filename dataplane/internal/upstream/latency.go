package upstream

import (
	"math"
	"sync/atomic"
	"time"
)

// latencyAlpha is the weight of a new sample in a deployment's latency average: the
// last ten or so answers dominate it.
const latencyAlpha = 0.2

// latencyEWMA is a deployment's recent time to an answer's headers, as an
// exponentially weighted moving average in seconds; zero until the first sample.
// Safe for concurrent use, without a lock.
type latencyEWMA struct{ bits atomic.Uint64 }

func (l *latencyEWMA) observe(d time.Duration) float64 {
	s := max(d.Seconds(), 1e-6) // never zero, which means "no sample"
	for {
		old := l.bits.Load()
		next := s
		if old != 0 {
			prev := math.Float64frombits(old)
			next = prev + latencyAlpha*(s-prev)
		}
		if l.bits.CompareAndSwap(old, math.Float64bits(next)) {
			return next
		}
	}
}

func (l *latencyEWMA) seconds() float64 { return math.Float64frombits(l.bits.Load()) }

// Latency is the deployment's recent time from sending a request to the headers of
// an answer that was not a failure (for a non-streamed answer, the whole answer),
// averaged over roughly the last ten; zero before the first one.
func (t *Target) Latency() time.Duration {
	return time.Duration(t.latency.seconds() * float64(time.Second))
}
