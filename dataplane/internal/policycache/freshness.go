package policycache

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The age of a worker's policy.
//
// The control plane writes PC_POLICY only when the policy changes (its periodic
// republish finds the bucket current and writes nothing), so a snapshot's
// GeneratedAt says when the policy last changed, not whether the worker is still
// in step: a healthy worker whose policy has not changed for a week holds a
// week-old snapshot. What a stale worker lacks is contact: cut off from NATS, or
// with a watch that no longer delivers, it keeps enforcing what it had. So the age
// is measured from the last time the worker *confirmed* that its snapshot is the
// newest in PC_POLICY: when a snapshot arrives (applied, or the version in use
// written again), and at each look of the watch (every PollInterval) that finds the
// bucket's last sequence (the snapshot key's newest revision) is the one the policy
// in use came from. A newer revision that this worker did not apply (one it
// rejected: unsigned, badly signed, undecodable) does not confirm it either.

// freshness records when the policy in use was last confirmed current.
type freshness struct {
	at       atomic.Int64  // Unix nanoseconds of the last confirmation; 0 before the first
	revision atomic.Uint64 // the snapshot key's revision at that confirmation
}

// confirm records that revision of the snapshot key holds the policy in use, now.
func (f *freshness) confirm(revision uint64) {
	f.revision.Store(revision)
	f.at.Store(time.Now().UnixNano())
}

// Age is how long ago the worker last confirmed that the policy in use is the
// newest in PC_POLICY; ok is false before the first snapshot.
func (c *Cache) Age() (age time.Duration, ok bool) {
	at := c.fresh.at.Load()
	if at == 0 || c.current.Load() == nil {
		return 0, false
	}
	return time.Since(time.Unix(0, at)), true
}

// GeneratedAt is when the control plane generated the snapshot in use (the time
// of the last policy change), zero before the first snapshot.
func (c *Cache) GeneratedAt() time.Time {
	if p := c.current.Load(); p != nil {
		return p.GeneratedAt
	}
	return time.Time{}
}

// ageCollector exports the policy's age and generation time, computed when scraped,
// once there is a policy.
type ageCollector struct {
	c              *Cache
	age, generated *prometheus.Desc
}

func newAgeCollector(c *Cache) *ageCollector {
	return &ageCollector{
		c: c,
		age: prometheus.NewDesc("portcullis_dataplane_policy_age_seconds",
			"Seconds since this worker last confirmed that its policy snapshot is the newest in PC_POLICY "+
				"(on receiving a snapshot, and by a check every few seconds); absent before the first snapshot.", nil, nil),
		generated: prometheus.NewDesc("portcullis_dataplane_policy_generated_timestamp_seconds",
			"When the control plane generated the policy snapshot in use (the last policy change), as a Unix time.", nil, nil),
	}
}

func (a *ageCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- a.age
	ch <- a.generated
}

func (a *ageCollector) Collect(ch chan<- prometheus.Metric) {
	age, ok := a.c.Age()
	if !ok {
		return
	}
	ch <- prometheus.MustNewConstMetric(a.age, prometheus.GaugeValue, age.Seconds())
	if g := a.c.GeneratedAt(); !g.IsZero() {
		ch <- prometheus.MustNewConstMetric(a.generated, prometheus.GaugeValue, float64(g.UnixNano())/1e9)
	}
}
