package guardrails

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/portcullis-gw/portcullis/shared/guardrails"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// CleanPrompt is about 1 KiB of ordinary prompt text with nothing to find: prose
// with the digits, colons, dates, amounts, version numbers and a URL that wake the
// detectors' prefilters, as real prompts have.
const CleanPrompt = `You are helping the finance team prepare the board pack for Q3 2026. ` +
	`Summarise the attached quarterly report in five bullet points: revenue grew 12.4% to 48.2 million, ` +
	`gross margin was 61%, and operating costs rose by 3.1 million, mostly for the new data centre in Frankfurt. ` +
	`Note: the figures for September are preliminary until the audit on 2026-10-15. ` +
	`Compare them with the plan (version 2.3, approved on 14 March) and flag every line that is more than 5% off. ` +
	`Keep the tone neutral; the audience is the audit committee, not investors. ` +
	`Then list three risks for Q4: supplier prices, the migration of the billing system to release 4.2, ` +
	`and hiring for the 18 open roles. For each risk give an owner, a likelihood from 1 to 5 and one mitigation. ` +
	`Use the template at https://wiki.example.com/finance/board-pack and write no more than 300 words. ` +
	`If a number is missing, say so instead of guessing, and mark estimates with a tilde before the value. ` +
	`Finally, suggest two questions the committee is likely to ask, with short answers.`

// Speed is what the guardrail detectors cost on clean text, measured in this
// process on one goroutine.
type Speed struct {
	PromptBytes int
	// AllP50, AllP99: one scan of CleanPrompt with every family.
	AllP50, AllP99 time.Duration
	// PIISecretsMBps: throughput of PII and secrets scans of clean text, in MB/s
	// (10^6 bytes) on one core.
	PIISecretsMBps float64
	// StreamPerDelta: the mean cost of one streamed delta (a word) under an output
	// policy redacting PII and blocking secrets and injection, Flush included.
	StreamPerDelta time.Duration
}

// Speed targets of the guardrails issue.
const (
	TargetAllP50         = 30 * time.Microsecond
	TargetPIISecretsMBps = 50.0
)

// MeasureSpeed measures Speed with n timed scans per figure (n ≥ 100).
func MeasureSpeed(n int) (Speed, error) {
	n = max(n, 100)
	if fs := guardrails.Scan(CleanPrompt); len(fs) > 0 {
		return Speed{}, fmt.Errorf("the clean prompt has %d findings (first %s/%s): it must have none", len(fs), fs[0].Family, fs[0].Type)
	}
	s := Speed{PromptBytes: len(CleanPrompt)}
	runtime.GC()
	for range n / 10 { // warm up
		guardrails.Scan(CleanPrompt)
	}
	lat := make([]time.Duration, n)
	for i := range lat {
		start := time.Now()
		guardrails.Scan(CleanPrompt)
		lat[i] = time.Since(start)
	}
	slices.Sort(lat)
	s.AllP50, s.AllP99 = lat[n/2], lat[n*99/100]

	big := strings.Repeat(CleanPrompt+" ", 64) // ~64 KiB, past every cache of one prompt
	start := time.Now()
	rounds := max(n/64, 20)
	for range rounds {
		guardrails.Scan(big, guardrails.PII, guardrails.Secrets)
	}
	s.PIISecretsMBps = float64(rounds*len(big)) / time.Since(start).Seconds() / 1e6

	p := guardrails.Compile(policy.Guardrails{
		PII:       policy.GuardrailFamily{Output: policy.GuardrailRedact},
		Secrets:   policy.GuardrailFamily{Output: policy.GuardrailBlock},
		Injection: policy.GuardrailFamily{Output: policy.GuardrailBlock},
	})
	words := strings.SplitAfter(CleanPrompt, " ")
	start = time.Now()
	streams := max(n/20, 10)
	for range streams {
		st := p.NewStream(guardrails.Output, nil)
		for _, w := range words {
			if _, blocked := st.Push(w); blocked != "" {
				return Speed{}, fmt.Errorf("the clean prompt streamed was blocked by %s", blocked)
			}
		}
		if _, blocked := st.Flush(); blocked != "" {
			return Speed{}, fmt.Errorf("the clean prompt streamed was blocked by %s at the end", blocked)
		}
	}
	s.StreamPerDelta = time.Since(start) / time.Duration(streams*len(words))
	return s, nil
}

// Verdict says whether a figure meets its target.
func Verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

// Print writes the figures with the targets.
func (s Speed) Print(w io.Writer) {
	fmt.Fprintf(w, "guardrail scan of a clean %d-byte prompt, every family: p50 %s, p99 %s (target p50 ≤ %s: %s)\n",
		s.PromptBytes, s.AllP50, s.AllP99, TargetAllP50, Verdict(s.AllP50 <= TargetAllP50))
	fmt.Fprintf(w, "PII and secrets on clean text: %.0f MB/s on one core (target ≥ %.0f: %s)\n",
		s.PIISecretsMBps, TargetPIISecretsMBps, Verdict(s.PIISecretsMBps >= TargetPIISecretsMBps))
	fmt.Fprintf(w, "streamed output, per word delta: %s\n", s.StreamPerDelta)
}
