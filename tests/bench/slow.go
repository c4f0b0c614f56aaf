package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis-gw/portcullis/tests/slowbody"
)

// slowClients is how many unauthenticated clients the slow-body phase opens at once.
const slowClients = 500

// minServed is the fewest authenticated requests the phase sends, one after another
// from its start.
const minServed = 20

// slowResult is what the slow-body phase measured: the gateway's RSS before it and
// at its peak while slowClients unauthenticated connections each declared a 4 MiB
// body and sent it slowly, how they were answered, and how many authenticated
// requests were served meanwhile.
type slowResult struct {
	BeforeKiB, PeakKiB int64
	Answers            map[string]int
	Served, Sent       int
}

// GrowthMiB is the RSS growth over the phase.
func (r slowResult) GrowthMiB() float64 { return float64(r.PeakKiB-r.BeforeKiB) / 1024 }

// Summary is the phase in one line.
func (r slowResult) Summary() string {
	answers := make([]string, 0, len(r.Answers))
	for a, n := range r.Answers {
		answers = append(answers, fmt.Sprintf("%d × %s", n, a))
	}
	sort.Strings(answers)
	return fmt.Sprintf("%d unauthenticated connections each declaring a %d MiB body sent 1 KiB per 50 ms: "+
		"gateway RSS %.1f MiB before, %.1f MiB at its peak (+%.1f MiB); answers %s; %d of %d authenticated "+
		"requests served meanwhile", slowClients, slowbody.Declared>>20, float64(r.BeforeKiB)/1024,
		float64(r.PeakKiB)/1024, r.GrowthMiB(), strings.Join(answers, ", "), r.Served, r.Sent)
}

// slowPhase opens slowClients connections with forged tokens that each declare a
// 4 MiB body and trickle it, samples the gateway's RSS every 10 ms meanwhile, and
// sends authenticated requests one after another until every slow client is
// answered (minServed at least). It fails if an authenticated request fails.
func slowPhase(ctx context.Context, st *stack) (slowResult, error) {
	before, err := st.gw.RSS()
	if err != nil {
		return slowResult{}, err
	}
	res := slowResult{BeforeKiB: before, PeakKiB: before, Answers: map[string]int{}}
	var peak atomic.Int64
	peak.Store(before)
	done := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		for {
			if r, err := st.gw.RSS(); err == nil && r > peak.Load() {
				peak.Store(r)
			}
			select {
			case <-done:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	})
	var mu sync.Mutex
	var slow sync.WaitGroup
	addr := strings.TrimPrefix(st.gw.URL, "http://")
	for i := range slowClients {
		slow.Go(func() {
			a := slowbody.Send(addr, fmt.Sprintf("forged-token-%d", i))
			mu.Lock()
			res.Answers[a]++
			mu.Unlock()
		})
	}
	allAnswered := make(chan struct{})
	go func() { slow.Wait(); close(allAnswered) }()
	body := requestBody(false)
	var firstErr error
serve:
	for {
		select {
		case <-allAnswered:
			if res.Sent >= minServed {
				break serve
			}
		default:
		}
		res.Sent++
		if err := do(ctx, st.gateway, false, body); err != nil {
			firstErr = err
			<-allAnswered
			break
		}
		res.Served++
	}
	close(done)
	sampler.Wait()
	res.PeakKiB = peak.Load()
	if firstErr != nil {
		return res, fmt.Errorf("an authenticated request during the slow-body phase: %w", firstErr)
	}
	return res, nil
}
