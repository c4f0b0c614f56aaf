package upstream

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// Retry and breaker defaults, used when a deployment's policy leaves a setting zero.
const (
	DefaultMaxAttempts      = 3
	DefaultFailureThreshold = 5
	DefaultResetTimeout     = 60 * time.Second

	// backoffBase and backoffCap bound the exponential backoff between attempts,
	// before jitter: base, 2·base, 4·base, … up to cap.
	backoffBase = 100 * time.Millisecond
	backoffCap  = 2 * time.Second
	// RetryAfterCap is the longest Retry-After of an upstream 429 the gateway waits
	// out before retrying; a longer one ends the attempts.
	RetryAfterCap = 5 * time.Second

	// Retry budget: every first attempt earns budgetPerRequest of a retry, and the
	// budget holds at most budgetCap retries, so retries add at most 20 % to the
	// load on a deployment (plus a burst of budgetCap), and cannot multiply an
	// outage's traffic.
	budgetPerRequest = 0.2
	budgetCap        = 10
)

// ErrBreakerOpen reports a call refused because the deployment's breaker is open.
var ErrBreakerOpen = errors.New("circuit breaker open")

// resilience is a deployment's breaker and retry budget. Safe for concurrent use.
type resilience struct {
	breaker     *gobreaker.TwoStepCircuitBreaker[struct{}]
	maxAttempts int
	constant    bool // constant backoff instead of exponential

	errors *errorWindow

	mu     sync.Mutex // guards budget
	budget float64
}

func newResilience(d policy.Deployment, m *Metrics, log *slog.Logger, errorSpan time.Duration) *resilience {
	threshold := uint32(d.CircuitBreaker.FailureThreshold)
	if threshold == 0 {
		threshold = DefaultFailureThreshold
	}
	reset := time.Duration(d.CircuitBreaker.ResetTimeoutSeconds) * time.Second
	if reset <= 0 {
		reset = DefaultResetTimeout
	}
	r := &resilience{maxAttempts: d.Retry.MaxAttempts, constant: d.Retry.Backoff == "constant", budget: budgetCap,
		errors: newErrorWindow(errorSpan)}
	if r.maxAttempts <= 0 {
		r.maxAttempts = DefaultMaxAttempts
	}
	r.breaker = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        d.Name,
		MaxRequests: uint32(max(1, d.CircuitBreaker.HalfOpenMaxRequests)), // probes while half-open
		Timeout:     reset,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= threshold },
		IsExcluded:  func(err error) bool { return errors.Is(err, errAttemptIgnored) },
		OnStateChange: func(name string, from, to gobreaker.State) {
			m.breakerChanged(name, from, to)
			level := slog.LevelInfo
			if to == gobreaker.StateOpen {
				level = slog.LevelWarn
			}
			log.Log(context.Background(), level, "circuit breaker changed state", "deployment", name, "from", from.String(), "to", to.String())
		},
	})
	m.breakerChanged(d.Name, gobreaker.StateClosed, gobreaker.StateClosed)
	return r
}

// Outcome is what one attempt at a deployment came to, for its breaker.
type Outcome int

// The outcomes.
const (
	// Success: the upstream answered, including with a client error (4xx other than
	// 401, 403 and 429), which says nothing about the upstream's health.
	Success Outcome = iota
	// Failure: the upstream could not be reached, timed out, answered 5xx, 429, or
	// refused the gateway's key, or a stream broke.
	Failure
	// Ignored: the client went away; it says nothing about the upstream.
	Ignored
)

var (
	errAttemptFailed  = errors.New("attempt failed")
	errAttemptIgnored = errors.New("attempt ignored")
)

// Allow asks the deployment's breaker whether a call may go ahead. It returns the
// function to report the call's outcome with, exactly once, or an
// *apierr.Error wrapping ErrBreakerOpen when the breaker is open (or half-open
// with its probe already under way).
func (t *Target) Allow() (func(Outcome), error) {
	done, err := t.res.breaker.Allow()
	if err != nil {
		t.metrics.rejected(t.name)
		return nil, apierr.Wrap(apierr.UpstreamUnavailable, errors.Join(ErrBreakerOpen, err),
			"the upstream serving this model is failing; its circuit breaker is open")
	}
	var once sync.Once
	return func(o Outcome) {
		once.Do(func() {
			t.metrics.attempt(t.name, o)
			now := time.Now()
			t.res.errors.record(now, o)
			if t.metrics != nil {
				rate, _ := t.res.errors.rate(now)
				t.metrics.errorRate(t.name, rate)
			}
			switch o {
			case Success:
				done(nil)
			case Failure:
				done(errAttemptFailed)
			default:
				done(errAttemptIgnored) // excluded from the counts: see IsExcluded
			}
		})
	}, nil
}

// BreakerState is the deployment's breaker state: closed, half-open or open.
func (t *Target) BreakerState() string { return t.res.breaker.State().String() }

// MaxAttempts is how many attempts a request may make at this deployment.
func (t *Target) MaxAttempts() int { return t.res.maxAttempts }

// OnFirstAttempt credits the retry budget with a request's first attempt.
func (t *Target) OnFirstAttempt() {
	t.res.mu.Lock()
	t.res.budget = min(budgetCap, t.res.budget+budgetPerRequest)
	t.res.mu.Unlock()
}

// SpendRetry takes one retry from the budget, reporting whether there was one.
func (t *Target) SpendRetry() bool {
	t.res.mu.Lock()
	defer t.res.mu.Unlock()
	if t.res.budget < 1 {
		t.metrics.budgetExhausted(t.name)
		return false
	}
	t.res.budget--
	t.metrics.retry(t.name)
	return true
}

// Backoff is how long to wait before attempt number next (1 for the first retry):
// full jitter over an exponential (or, with backoff "constant", fixed) ceiling.
func (t *Target) Backoff(next int) time.Duration {
	ceiling := backoffBase
	if !t.res.constant {
		ceiling = min(backoffCap, backoffBase<<min(next-1, 10))
	}
	return rand.N(ceiling + 1)
}

// RetryableStatus reports whether an upstream answer with status may be retried:
// 429 and 5xx.
func RetryableStatus(status int) bool {
	return status == http.StatusTooManyRequests || status >= 500
}

// RetryAfter reads a Retry-After header given in seconds; ok is false when there is
// none or it is not a number of seconds.
func RetryAfter(h http.Header) (time.Duration, bool) {
	v := h.Get("Retry-After")
	if v == "" {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}

// errorWindow counts a deployment's attempt outcomes over a sliding window of
// one-second buckets, for the error-rate fallback. Safe for concurrent use.
type errorWindow struct {
	mu      sync.Mutex // guards the fields below
	buckets []outcomeCount
	last    int64        // the unix second of the newest bucket
	total   outcomeCount // the sum of the buckets, kept as they change
}

type outcomeCount struct{ ok, failed int }

// ErrorRateMinSamples is how many outcomes a window needs before its error rate
// counts: one failure among the first few requests is no trend.
const ErrorRateMinSamples = 10

func newErrorWindow(span time.Duration) *errorWindow {
	n := max(1, int(span/time.Second))
	return &errorWindow{buckets: make([]outcomeCount, n)}
}

// advance moves the window to second now, clearing the buckets it passed. w.mu is held.
func (w *errorWindow) advance(now int64) {
	if now <= w.last {
		return
	}
	n := int64(len(w.buckets))
	for s := max(w.last+1, now-n+1); s <= now; s++ {
		b := &w.buckets[s%n]
		w.total.ok -= b.ok
		w.total.failed -= b.failed
		*b = outcomeCount{}
	}
	w.last = now
}

func (w *errorWindow) record(now time.Time, o Outcome) {
	if o == Ignored {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	sec := now.Unix()
	w.advance(sec)
	b := &w.buckets[sec%int64(len(w.buckets))]
	if o == Failure {
		b.failed++
		w.total.failed++
	} else {
		b.ok++
		w.total.ok++
	}
}

// rate is the share of failures over the window and how many outcomes it holds.
func (w *errorWindow) rate(now time.Time) (float64, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.advance(now.Unix())
	ok, failed := w.total.ok, w.total.failed
	if ok+failed == 0 {
		return 0, 0
	}
	return float64(failed) / float64(ok+failed), ok + failed
}

// ErrorRate is the deployment's share of failed attempts over the error-rate
// window, and how many attempts that is.
func (t *Target) ErrorRate() (float64, int) { return t.res.errors.rate(time.Now()) }

// Unhealthy reports whether calls to the deployment should go to a fallback: its
// breaker is open, or its error rate over the window is above threshold with at
// least ErrorRateMinSamples outcomes. The reason names which.
func (t *Target) Unhealthy(threshold float64) (bool, string) {
	if t.res.breaker.State() == gobreaker.StateOpen {
		return true, "circuit_open"
	}
	if rate, n := t.res.errors.rate(time.Now()); n >= ErrorRateMinSamples && rate > threshold {
		return true, "error_rate"
	}
	return false, ""
}
