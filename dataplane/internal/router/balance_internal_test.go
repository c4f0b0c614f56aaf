package router

import (
	"math/rand/v2"
	"testing"
)

// fixed returns a random source that always draws x.
func fixed(x float64) func() float64 { return func() float64 { return x } }

func TestChooseLeader(t *testing.T) {
	h := func(home bool, weight int, latency float64) candidate {
		return candidate{healthy: true, home: home, weight: weight, latency: latency}
	}
	sick := func(home bool, weight int) candidate { return candidate{home: home, weight: weight} }
	cases := []struct {
		name  string
		cands []candidate
		draw  float64
		want  int
	}{
		{"none healthy", []candidate{sick(true, 1), sick(false, 1)}, 0, -1},
		{"single", []candidate{h(true, 1, 0)}, 0.99, 0},
		{"equal weights, low draw", []candidate{h(true, 1, 0), h(true, 1, 0)}, 0.49, 0},
		{"equal weights, high draw", []candidate{h(true, 1, 0), h(true, 1, 0)}, 0.51, 1},
		{"3:1, draw in the first share", []candidate{h(true, 3, 0), h(true, 1, 0)}, 0.74, 0},
		{"3:1, draw past the first share", []candidate{h(true, 3, 0), h(true, 1, 0)}, 0.76, 1},
		{"home group first", []candidate{h(true, 1, 0), h(false, 100, 0)}, 0.99, 0},
		{"home sick: the other group", []candidate{sick(true, 1), h(false, 1, 0), h(false, 1, 0)}, 0.99, 2},
		{"sick deployment never leads", []candidate{sick(true, 5), h(true, 1, 0)}, 0, 1},
		{"standby skipped while a weighted one is healthy", []candidate{h(true, 0, 0), h(true, 1, 0)}, 0, 1},
		{"standby leads when only standbys are healthy", []candidate{sick(true, 1), h(true, 0, 0)}, 0.5, 1},
		{"home standby before the other group", []candidate{sick(true, 1), h(true, 0, 0), h(false, 1, 0)}, 0.5, 1},
		// equal weights, the second twice as slow: shares 1 and 0.5 of 1.5
		{"slower gets less, low draw", []candidate{h(true, 1, 0.1), h(true, 1, 0.2)}, 0.66, 0},
		{"slower gets less, high draw", []candidate{h(true, 1, 0.1), h(true, 1, 0.2)}, 0.67, 1},
		// the unmeasured one gets its full weight: shares 0.5 (slow), 1 (new), 1 (fastest) of 2.5
		{"unmeasured, draw in the slow share", []candidate{h(true, 1, 1), h(true, 1, 0), h(true, 1, 0.5)}, 0.19, 0},
		{"unmeasured, draw in its full share", []candidate{h(true, 1, 1), h(true, 1, 0), h(true, 1, 0.5)}, 0.59, 1},
		{"unmeasured, draw past its share", []candidate{h(true, 1, 1), h(true, 1, 0), h(true, 1, 0.5)}, 0.61, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := choose(tc.cands, fixed(tc.draw)); got != tc.want {
				t.Fatalf("choose(draw %.2f) = %d, want %d", tc.draw, got, tc.want)
			}
		})
	}
}

// TestChooseShares draws many times and checks each candidate's share against what
// weights and latencies call for, within a tolerance many standard deviations wide.
func TestChooseShares(t *testing.T) {
	cases := []struct {
		name  string
		cands []candidate
		want  []float64
	}{
		{"weights 3:1", []candidate{{healthy: true, home: true, weight: 3}, {healthy: true, home: true, weight: 1}},
			[]float64{0.75, 0.25}},
		{"equal weights, one four times slower",
			[]candidate{{healthy: true, home: true, weight: 1, latency: 0.05}, {healthy: true, home: true, weight: 1, latency: 0.2}},
			[]float64{0.8, 0.2}},
		{"a very slow one keeps the floor share",
			[]candidate{{healthy: true, home: true, weight: 1, latency: 0.01}, {healthy: true, home: true, weight: 1, latency: 100}},
			[]float64{1 / (1 + minLatencyShare), minLatencyShare / (1 + minLatencyShare)}},
		{"standby and sick get nothing",
			[]candidate{{home: true, weight: 9}, {healthy: true, home: true, weight: 0}, {healthy: true, home: true, weight: 2}, {healthy: true, home: true, weight: 2}},
			[]float64{0, 0, 0.5, 0.5}},
	}
	const draws = 20000
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			got := make([]float64, len(tc.cands))
			for range draws {
				got[choose(tc.cands, rng.Float64)]++
			}
			for i := range got {
				got[i] /= draws
				if d := got[i] - tc.want[i]; d > 0.02 || d < -0.02 {
					t.Errorf("candidate %d led %.3f of draws, want %.3f", i, got[i], tc.want[i])
				}
			}
		})
	}
}
