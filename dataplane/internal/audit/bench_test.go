package audit

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// benchSeq keeps request ids unique across benchmark runs.
var benchSeq atomic.Int64

// BenchmarkPublish measures Publish with the relay publishing to an embedded
// nats-server: ns/op is wall time per event, ns/publish the mean latency of one
// Publish call (one group-committed fsync shared by the callers waiting with it),
// events/s the throughput.
func BenchmarkPublish(b *testing.B) {
	e := newNATS(b)
	for _, callers := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			p := newPub(b, e, Options{})
			p.run()
			defer p.stopRelay(b)
			var latency atomic.Int64
			b.SetParallelism(max(1, callers/runtime.GOMAXPROCS(0)))
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			if callers == 1 {
				for b.Loop() {
					t0 := time.Now()
					if err := p.Publish(event(int(benchSeq.Add(1)))); err != nil {
						b.Fatal(err)
					}
					latency.Add(int64(time.Since(t0)))
				}
			} else {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						t0 := time.Now()
						if err := p.Publish(event(int(benchSeq.Add(1)))); err != nil {
							b.Error(err)
							return
						}
						latency.Add(int64(time.Since(t0)))
					}
				})
			}
			elapsed := time.Since(start)
			b.ReportMetric(float64(latency.Load())/float64(b.N), "ns/publish")
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
		})
	}
}
