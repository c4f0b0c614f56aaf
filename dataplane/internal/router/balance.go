package router

import (
	"math/rand/v2"

	"github.com/portcullis-gw/portcullis/dataplane/internal/policycache"
)

// minLatencyShare is the least share of its weight a healthy deployment keeps however
// slow it has been, so that it still gets the requests that show it has recovered.
const minLatencyShare = 0.05

// Balance orders the compliant candidates routes (as Candidates returns them) for
// one request. Healthy deployments come first: those whose breaker is closed (or
// half-open) and whose error rate is at most threshold. Among the healthy ones of
// the preferred group (the worker's own region if any is healthy there, else the
// rest), one is drawn at random to lead, each with a chance proportional to its
// weight scaled down by its recent latency relative to the group's fastest, but
// never below minLatencyShare of its weight; standbys (weight 0) lead only when no
// weighted deployment of the group is healthy. The other healthy candidates follow
// in policy order, for retries, then the unhealthy ones.
//
// With no healthy candidate it returns routes unchanged and false, with the first
// unhealthy one's reason ("circuit_open" or "error_rate"): the caller may fall back.
func Balance(routes []policycache.Route, threshold float64) ([]policycache.Route, bool, string) {
	var buf [8]candidate // most models have a few deployments: no allocation
	cands := buf[:0]
	var reason string
	for _, r := range routes {
		c := candidate{home: r.Home, weight: r.Weight}
		if t := r.Deployment.Target; t != nil {
			bad, why := t.Unhealthy(threshold)
			if bad && reason == "" {
				reason = why
			}
			c.healthy, c.latency = !bad, t.Latency().Seconds()
		}
		cands = append(cands, c)
	}
	lead := choose(cands, rand.Float64)
	if lead < 0 {
		return routes, false, reason
	}
	if lead == 0 && inOrder(cands) {
		return routes, true, "" // nothing to move: no copy
	}
	out := make([]policycache.Route, 0, len(routes))
	out = append(out, routes[lead])
	for i, r := range routes {
		if cands[i].healthy && i != lead {
			out = append(out, r)
		}
	}
	for i, r := range routes {
		if !cands[i].healthy {
			out = append(out, r)
		}
	}
	return out, true, ""
}

// candidate is what balancing knows of one route.
type candidate struct {
	healthy bool
	home    bool
	weight  int
	latency float64 // seconds; 0 when not yet measured
}

// choose returns the index of the candidate to lead, as Balance describes, drawing
// with random (uniform in [0, 1)); -1 when none is healthy.
func choose(cands []candidate, random func() float64) int {
	first := -1
	for i, c := range cands {
		if c.healthy {
			first = i
			break
		}
	}
	if first < 0 {
		return -1
	}
	home := cands[first].home
	inGroup := func(c candidate) bool { return c.healthy && c.home == home && c.weight > 0 }

	fastest := 0.0
	for _, c := range cands {
		if inGroup(c) && c.latency > 0 && (fastest == 0 || c.latency < fastest) {
			fastest = c.latency
		}
	}
	share := func(c candidate) float64 {
		w := float64(c.weight)
		if fastest > 0 && c.latency > 0 { // a deployment not yet measured gets its full weight
			w *= max(fastest/c.latency, minLatencyShare)
		}
		return w
	}
	total := 0.0
	for _, c := range cands {
		if inGroup(c) {
			total += share(c)
		}
	}
	if total == 0 {
		return first // only standbys are healthy in the group
	}
	x, lead := random()*total, -1
	for i, c := range cands {
		if !inGroup(c) {
			continue
		}
		lead = i
		if x -= share(c); x < 0 {
			break
		}
	}
	return lead
}

// inOrder reports whether no unhealthy candidate comes before a healthy one.
func inOrder(cands []candidate) bool {
	seenBad := false
	for _, c := range cands {
		if !c.healthy {
			seenBad = true
		} else if seenBad {
			return false
		}
	}
	return true
}
