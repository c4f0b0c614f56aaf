// Package health collects the health reports that data-plane workers publish on NATS
// (natsnames.HealthSubjects, one core NATS message per worker every health.Interval)
// and answers what every deployment's circuit breaker and error rate look like across
// the fleet. It keeps only the latest report of each worker, in memory: a report older
// than StaleAfter means the worker is gone, and it is forgotten.
//
// It also watches each worker's policy version: a worker whose reports show a
// version behind the published one for longer than Options.PolicyLagAfter is
// reported once per worker and version to Options.OnPolicyLag, which raises the
// policy_lag alert.
package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis-gw/portcullis/shared/health"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
)

// StaleAfter is how old (by arrival) a worker's latest report may be before the worker
// is left out of answers: three missed intervals.
const StaleAfter = 3 * health.Interval

// inboxSize is how many reports may wait for the collector before NATS drops them as
// from a slow consumer.
const inboxSize = 1024

// Summary states of a deployment, besides the breaker states it takes from workers.
const (
	StateOpen     = "open"
	StateHalfOpen = "half-open"
	StateClosed   = "closed"
	StateUnusable = "unusable"
)

// Options configures a Collector.
type Options struct {
	// Log receives rejected reports at debug level. Required.
	Log *slog.Logger
	// Now is the clock that stamps arrivals; nil means time.Now.
	Now func() time.Time
	// PublishedVersion is the newest policy version published (0: none yet); with
	// PolicyLagAfter > 0 and OnPolicyLag it turns the policy lag check on.
	PublishedVersion func() int64
	// PolicyLagAfter is how long a worker's reports may show a policy version behind
	// PublishedVersion before OnPolicyLag hears of it; 0 turns the check off.
	PolicyLagAfter time.Duration
	// OnPolicyLag is told, once per worker and lagging version, of a worker whose
	// policy has lagged for PolicyLagAfter; an error makes the next report of that
	// worker tell it again. It is called from the collector's loop, so it must not
	// block long.
	OnPolicyLag func(ctx context.Context, lag PolicyLag) error
}

// PolicyLag is a worker whose policy version has been behind the published one since
// Since (when a report first showed it behind).
type PolicyLag struct {
	Worker, Region   string
	Version          int64 // the worker's
	PublishedVersion int64
	Since            time.Time
	For              time.Duration // how long, at the report that told
}

// lagState is a worker's policy lag: since when its reports show it behind, and, when
// told is set, the version whose lag OnPolicyLag was told of.
type lagState struct {
	since    time.Time
	told     bool
	notified int64
}

// WorkerHealth is one deployment's health as one worker last reported it.
type WorkerHealth struct {
	Worker        string    `json:"worker"`
	Region        string    `json:"region"`
	Breaker       string    `json:"breaker"`
	ErrorRate     float64   `json:"error_rate"`
	Samples       int       `json:"samples"`
	LatencyMS     float64   `json:"latency_ms"`
	ReportedAt    time.Time `json:"reported_at"`
	PolicyVersion int64     `json:"policy_version"`
}

// DeploymentHealth is one deployment's health across every worker with a fresh report
// that lists it. Workers are sorted by worker name.
type DeploymentHealth struct {
	Deployment string         `json:"deployment"`
	State      string         `json:"state"`
	Workers    []WorkerHealth `json:"workers"`
}

// Fleet is the health of every deployment at one moment, and how many workers have a
// fresh report (including workers whose report lists no deployment).
type Fleet struct {
	Deployments []DeploymentHealth
	Workers     int
}

// received is a worker's latest report and when it arrived.
type received struct {
	report health.Report
	at     time.Time
}

// Collector subscribes to the workers' health reports and keeps the latest of each
// worker. It is safe for concurrent use.
type Collector struct {
	nc      *nats.Conn
	log     *slog.Logger
	now     func() time.Time
	reports *prometheus.CounterVec

	mu     sync.Mutex
	latest map[string]received // worker -> latest report; mu guards it
	lag    map[string]lagState // worker -> its policy lag; mu guards it

	published   func() int64
	lagAfter    time.Duration
	onPolicyLag func(context.Context, PolicyLag) error

	lifeMu  sync.Mutex // guards sub, inbox, running and ended
	sub     *nats.Subscription
	inbox   chan *nats.Msg
	running bool // Run was called
	ended   bool // Run returned
}

// New returns a collector of the reports published on nc. It does nothing until
// Subscribe or Run.
func New(nc *nats.Conn, o Options) *Collector {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	c := &Collector{
		nc:     nc,
		log:    o.Log,
		now:    now,
		latest: map[string]received{},
		lag:    map[string]lagState{},

		published:   o.PublishedVersion,
		lagAfter:    o.PolicyLagAfter,
		onPolicyLag: o.OnPolicyLag,
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "portcullis_controlplane", Name: "health_reports_total",
			Help: "Worker health reports received, by result: ok, or rejected (undecodable or an unknown schema version).",
		}, []string{"result"}),
	}
	// Expose both series from the start, so that a rate of rejections is 0, not absent.
	c.reports.WithLabelValues("ok")
	c.reports.WithLabelValues("rejected")
	return c
}

// Collectors returns the collector's metrics, for the caller to register.
func (c *Collector) Collectors() []prometheus.Collector {
	return []prometheus.Collector{c.reports}
}

// Subscribe subscribes to natsnames.HealthSubjects; the reports that arrive wait
// (up to inboxSize of them) for Run to take them in. Calling it before Run makes
// sure no report published after it returns is missed; Run subscribes itself
// otherwise. A second call does nothing; a call after Run ended fails.
func (c *Collector) Subscribe() error {
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	switch {
	case c.ended:
		return errors.New("health collector: already stopped")
	case c.sub != nil:
		return nil
	}
	inbox := make(chan *nats.Msg, inboxSize)
	sub, err := c.nc.ChanSubscribe(natsnames.HealthSubjects, inbox)
	if err != nil {
		return fmt.Errorf("subscribe to %s: %w", natsnames.HealthSubjects, err)
	}
	c.sub, c.inbox = sub, inbox
	return nil
}

// Run takes in reports (subscribing first, unless Subscribe did) until ctx ends,
// then unsubscribes and returns nil. It fails if the subscription fails, and if
// called twice.
func (c *Collector) Run(ctx context.Context) (err error) {
	c.lifeMu.Lock()
	started := c.running || c.ended
	c.running = true
	c.lifeMu.Unlock()
	if started {
		return errors.New("health collector: already running")
	}
	defer func() {
		c.lifeMu.Lock()
		defer c.lifeMu.Unlock()
		c.ended = true
		if c.sub == nil {
			return
		}
		if uerr := c.sub.Unsubscribe(); uerr != nil && !errors.Is(uerr, nats.ErrConnectionClosed) && !errors.Is(uerr, nats.ErrBadSubscription) {
			err = errors.Join(err, fmt.Errorf("unsubscribe from %s: %w", natsnames.HealthSubjects, uerr))
		}
	}()
	if err := c.Subscribe(); err != nil {
		return err
	}
	c.lifeMu.Lock()
	inbox := c.inbox
	c.lifeMu.Unlock()
	for {
		select {
		case <-ctx.Done():
			return nil
		case msg := <-inbox:
			if worker, ok := c.ingest(msg.Subject, msg.Data); ok {
				c.checkLag(ctx, worker)
			}
		}
	}
}

// ingest decodes one report and keeps it as its worker's latest, returning the
// worker; a bad report is counted and logged at debug, never kept.
func (c *Collector) ingest(subject string, data []byte) (worker string, ok bool) {
	r, err := health.Decode(data)
	if err != nil {
		c.reports.WithLabelValues("rejected").Inc()
		c.log.Debug("health report rejected", "subject", subject, "bytes", len(data), "error", err)
		return "", false
	}
	now := c.now()
	c.mu.Lock()
	c.latest[r.Worker] = received{report: r, at: now}
	c.forgetStale(now)
	c.mu.Unlock()
	// Counted once kept: whoever sees the count sees the report.
	c.reports.WithLabelValues("ok").Inc()
	return r.Worker, true
}

// forgetStale drops every report older than StaleAfter at now, and the policy lag of
// its worker. c.mu must be held.
func (c *Collector) forgetStale(now time.Time) {
	for w, rec := range c.latest {
		if stale(rec.at, now) {
			delete(c.latest, w)
			delete(c.lag, w)
		}
	}
}

// lagCallTimeout bounds one OnPolicyLag call.
const lagCallTimeout = 5 * time.Second

// checkLag looks at the policy version of worker, whose report just arrived: behind
// the published version, its lag starts (or goes on, even as the worker moves to a
// newer version that is still behind); caught up, it ends. A lag of PolicyLagAfter
// or more is told to OnPolicyLag, once per worker and version.
func (c *Collector) checkLag(ctx context.Context, worker string) {
	if c.lagAfter <= 0 || c.published == nil || c.onPolicyLag == nil {
		return
	}
	published := c.published()
	if published <= 0 {
		return
	}
	c.mu.Lock()
	rec, ok := c.latest[worker]
	if !ok {
		c.mu.Unlock()
		return
	}
	st := c.lag[worker]
	if rec.report.PolicyVersion >= published {
		delete(c.lag, worker)
		c.mu.Unlock()
		return
	}
	if st.since.IsZero() {
		st.since = rec.at
	}
	c.lag[worker] = st
	c.mu.Unlock()
	lagged := rec.at.Sub(st.since)
	if lagged < c.lagAfter || (st.told && st.notified == rec.report.PolicyVersion) {
		return
	}
	callCtx, cancel := context.WithTimeout(ctx, lagCallTimeout)
	err := c.onPolicyLag(callCtx, PolicyLag{Worker: worker, Region: rec.report.Region, Version: rec.report.PolicyVersion,
		PublishedVersion: published, Since: st.since.UTC(), For: lagged})
	cancel()
	if err != nil {
		c.log.Warn("policy lag alert failed; retrying at the worker's next report", "worker", worker, "err", err)
		return
	}
	c.mu.Lock()
	if cur, ok := c.lag[worker]; ok && cur.since.Equal(st.since) {
		cur.told, cur.notified = true, rec.report.PolicyVersion
		c.lag[worker] = cur
	}
	c.mu.Unlock()
}

func stale(at, now time.Time) bool { return now.Sub(at) > StaleAfter }

// Current is Fleet at the collector's clock.
func (c *Collector) Current() Fleet { return c.Fleet(c.now()) }

// Snapshot is the health of every deployment at now, sorted by deployment name.
func (c *Collector) Snapshot(now time.Time) []DeploymentHealth { return c.Fleet(now).Deployments }

// Fleet is the health of every deployment at now, from the workers whose latest report
// is fresh at now; stale reports are forgotten.
func (c *Collector) Fleet(now time.Time) Fleet {
	c.mu.Lock()
	c.forgetStale(now)
	fresh := make([]received, 0, len(c.latest))
	for _, rec := range c.latest {
		fresh = append(fresh, rec)
	}
	c.mu.Unlock()

	byName := map[string]*DeploymentHealth{}
	for _, rec := range fresh {
		r := rec.report
		for _, d := range r.Deployments {
			dh := byName[d.Name]
			if dh == nil {
				dh = &DeploymentHealth{Deployment: d.Name}
				byName[d.Name] = dh
			}
			dh.Workers = append(dh.Workers, WorkerHealth{
				Worker: r.Worker, Region: r.Region, Breaker: d.Breaker,
				ErrorRate: d.ErrorRate, Samples: d.Samples, LatencyMS: d.LatencyMS,
				ReportedAt: rec.at.UTC(), PolicyVersion: r.PolicyVersion,
			})
		}
	}
	out := Fleet{Deployments: make([]DeploymentHealth, 0, len(byName)), Workers: len(fresh)}
	for _, dh := range byName {
		slices.SortFunc(dh.Workers, func(a, b WorkerHealth) int {
			return cmpStrings(a.Worker, b.Worker, a.Region, b.Region)
		})
		dh.State = summarize(dh.Workers)
		out.Deployments = append(out.Deployments, *dh)
	}
	slices.SortFunc(out.Deployments, func(a, b DeploymentHealth) int {
		return strings.Compare(a.Deployment, b.Deployment)
	})
	return out
}

// cmpStrings orders by a1/b1, then by a2/b2.
func cmpStrings(a1, b1, a2, b2 string) int {
	if c := strings.Compare(a1, b1); c != 0 {
		return c
	}
	return strings.Compare(a2, b2)
}

// summarize is a deployment's state across workers: open if any worker has its breaker
// open, else half-open if any has it half-open, else unusable if every worker says
// unusable, else closed.
func summarize(workers []WorkerHealth) string {
	has := func(state string) bool {
		return slices.ContainsFunc(workers, func(w WorkerHealth) bool { return w.Breaker == state })
	}
	switch {
	case has(StateOpen):
		return StateOpen
	case has(StateHalfOpen):
		return StateHalfOpen
	case len(workers) > 0 && !slices.ContainsFunc(workers, func(w WorkerHealth) bool { return w.Breaker != StateUnusable }):
		return StateUnusable
	}
	return StateClosed
}
