// Package healthpub publishes the worker's view of every deployment's health (its
// circuit breaker and recent error rate) on NATS every health.Interval, for the
// control plane's GET /admin/v1/deployments/health.
package healthpub

import (
	"context"
	"log/slog"
	"time"

	"github.com/portcullis-gw/portcullis/dataplane/internal/policycache"
	"github.com/portcullis-gw/portcullis/shared/health"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
)

// Publisher sends messages; *nats.Conn is one.
type Publisher interface {
	Publish(subject string, data []byte) error
}

// PolicySource yields the policy in use, or nil before the first snapshot.
type PolicySource interface {
	Current() *policycache.Policy
}

// Options configures a Reporter.
type Options struct {
	Conn     Publisher
	Policy   PolicySource
	Worker   string
	Region   string
	Interval time.Duration // zero means health.Interval
	Log      *slog.Logger
}

// Reporter publishes the health reports. Run it once.
type Reporter struct {
	o Options
}

// New returns a Reporter.
func New(o Options) *Reporter {
	if o.Interval <= 0 {
		o.Interval = health.Interval
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Reporter{o: o}
}

// Run publishes a report at once and then every interval until ctx is done.
func (r *Reporter) Run(ctx context.Context) error {
	tick := time.NewTicker(r.o.Interval)
	defer tick.Stop()
	for {
		r.publish()
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Report is the worker's current health report, or false before the first policy.
func (r *Reporter) Report() (health.Report, bool) {
	p := r.o.Policy.Current()
	if p == nil {
		return health.Report{}, false
	}
	rep := health.Report{Worker: r.o.Worker, Region: r.o.Region, At: time.Now().UTC(), PolicyVersion: p.Version}
	for _, d := range p.Deployments() {
		h := health.Deployment{Name: d.Name, Breaker: "unusable"}
		if d.Target != nil {
			h.Breaker = d.Target.BreakerState()
			h.ErrorRate, h.Samples = d.Target.ErrorRate()
			h.LatencyMS = float64(d.Target.Latency().Microseconds()) / 1000
		}
		rep.Deployments = append(rep.Deployments, h)
	}
	return rep, true
}

func (r *Reporter) publish() {
	rep, ok := r.Report()
	if !ok {
		return
	}
	data, err := health.Encode(rep)
	if err == nil {
		err = r.o.Conn.Publish(natsnames.HealthSubject(r.o.Region, r.o.Worker), data)
	}
	if err != nil {
		r.o.Log.Debug("publish health report", "err", err)
	}
}
