package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// cell is one measurement: a target, streaming or not, at one concurrency.
type cell struct {
	Target      string
	Stream      bool
	Concurrency int
}

func (c cell) Mode() string {
	if c.Stream {
		return "chat stream"
	}
	return "chat"
}

func (c cell) String() string { return fmt.Sprintf("%s %s c=%d", c.Target, c.Mode(), c.Concurrency) }

// result is what measure found for a cell.
type result struct {
	cell
	Requests   int // completed, successful or not
	Errors     int
	P50, P99   time.Duration // over successful requests
	RPS        float64       // completed requests per second of wall time
	FirstError string
	// Limits is how the data plane's limiter counters changed over the measured
	// requests; set for the limits-on target only.
	Limits *limitsCounters
}

// prompt is the user message of every request: about 40 words.
var prompt = strings.Repeat("Summarise the residency rules for the eu region in one short paragraph. ", 4)

func requestBody(stream bool) []byte {
	s := `{"model":"` + benchModel + `","messages":[{"role":"user","content":"` + prompt + `"}],"max_tokens":64`
	if stream {
		s += `,"stream":true,"stream_options":{"include_usage":true}`
	}
	return []byte(s + "}")
}

var doneEvent = []byte("data: [DONE]\n\n")

// do sends one chat completion and reads the whole answer. A stream must end in [DONE].
func do(ctx context.Context, t target, stream bool, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL+"/v1/chat/completions", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", t.Auth)
	req.Header.Set("Content-Type", "application/json")
	resp, err := t.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %.200s", resp.StatusCode, got)
	}
	if stream && !bytes.HasSuffix(got, doneEvent) {
		return fmt.Errorf("stream did not end in [DONE]: %.200q", got)
	}
	if !bytes.Contains(got, []byte("mock")) {
		return fmt.Errorf("answer is not the mock's: %.200s", got)
	}
	return nil
}

// drive sends n requests from c.Concurrency workers, stopping early at the deadline, and
// returns each successful request's latency, the error count and the first error.
func drive(ctx context.Context, t target, c cell, n int, deadline time.Time) (lat []time.Duration, completed, errs int, first error) {
	body := requestBody(c.Stream)
	var next atomic.Int64
	var mu sync.Mutex // guards lat, completed, errs, first
	var wg sync.WaitGroup
	for range c.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]time.Duration, 0, n/c.Concurrency+1)
			myDone, myErrs := 0, 0
			var myFirst error
			for next.Add(1) <= int64(n) && time.Now().Before(deadline) && ctx.Err() == nil {
				start := time.Now()
				err := do(ctx, t, c.Stream, body)
				d := time.Since(start)
				myDone++
				if err != nil {
					myErrs++
					if myFirst == nil {
						myFirst = err
					}
					continue
				}
				mine = append(mine, d)
			}
			mu.Lock()
			defer mu.Unlock()
			lat = append(lat, mine...)
			completed += myDone
			errs += myErrs
			if first == nil {
				first = myFirst
			}
		}()
	}
	wg.Wait()
	return lat, completed, errs, first
}

// warm sends n unmeasured requests. It fails if every one of them failed, which means
// the stack is broken rather than loaded, and on a limited target if any failed.
func warm(ctx context.Context, t target, c cell, n int) error {
	if n == 0 {
		return nil
	}
	_, completed, errs, first := drive(ctx, t, c, n, time.Now().Add(time.Minute))
	if err := ctx.Err(); err != nil {
		return err
	}
	if completed > 0 && errs == completed {
		return fmt.Errorf("all %d requests failed; first: %w", errs, first)
	}
	if t.Limited && errs > 0 {
		return fmt.Errorf("%d of %d requests failed with limits on; first: %w", errs, completed, first)
	}
	return nil
}

// measure sends n requests and summarises them.
func measure(ctx context.Context, t target, c cell, n int, maxDuration time.Duration) (result, error) {
	start := time.Now()
	lat, completed, errs, first := drive(ctx, t, c, n, start.Add(maxDuration))
	elapsed := time.Since(start)
	if err := ctx.Err(); err != nil {
		return result{}, err
	}
	if len(lat) == 0 {
		return result{}, errors.Join(errors.New("no request succeeded"), first)
	}
	if t.Limited && errs > 0 {
		return result{}, fmt.Errorf("%d of %d requests failed with limits on; first: %w", errs, completed, first)
	}
	slices.Sort(lat)
	r := result{
		cell:     c,
		Requests: completed,
		Errors:   errs,
		P50:      percentile(lat, 0.50),
		P99:      percentile(lat, 0.99),
		RPS:      float64(completed) / elapsed.Seconds(),
	}
	if first != nil {
		r.FirstError = first.Error()
	}
	return r, nil
}

// percentile returns the nearest-rank percentile p of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// medianOfRounds combines each cell's results over the rounds: the median of its
// p50, p99 and req/s; its requests, errors and limiter counters summed; the first
// error seen. The cells keep the order of the first round.
func medianOfRounds(rounds [][]result) []result {
	if len(rounds) == 0 {
		return nil
	}
	var out []result
	for i, first := range rounds[0] {
		var p50, p99 []time.Duration
		var rps []float64
		r := result{cell: first.cell}
		for _, round := range rounds {
			x := round[i]
			p50, p99, rps = append(p50, x.P50), append(p99, x.P99), append(rps, x.RPS)
			r.Requests += x.Requests
			r.Errors += x.Errors
			if r.FirstError == "" {
				r.FirstError = x.FirstError
			}
			if x.Limits != nil {
				var sum limitsCounters
				if r.Limits != nil {
					sum = *r.Limits
				}
				sum = sum.add(*x.Limits)
				r.Limits = &sum
			}
		}
		r.P50, r.P99, r.RPS = median(p50), median(p99), median(rps)
		out = append(out, r)
	}
	return out
}

// median is the middle value of xs (the lower middle of an even count).
func median[T time.Duration | float64](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}
