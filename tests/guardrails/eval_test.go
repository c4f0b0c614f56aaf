package guardrails

import (
	"os"
	"strings"
	"testing"

	"github.com/portcullis-gw/portcullis/shared/guardrails"
)

// The quality targets, on the generated set.
const (
	minF1PIISecrets       = 0.95
	minInjectionRecall    = 0.80
	minInjectionPrecision = 0.90
	maxHardNegativeFP     = 0.03
)

// TestEvalSetMeetsTheTargets: PII and secrets F1 ≥ 0.95, injection recall ≥ 0.80
// at precision ≥ 0.90, and at most 3% of hard negatives with any finding, on the
// generated set (EvalSeed, EvalPerKind items of each kind).
func TestEvalSetMeetsTheTargets(t *testing.T) {
	rep := Evaluate(Generate(EvalSeed, EvalPerKind))
	var b strings.Builder
	rep.Print(&b, "generated set")
	t.Log("\n" + b.String())
	for _, m := range rep.Misses {
		t.Log(m)
	}
	for _, f := range []guardrails.Family{guardrails.PII, guardrails.Secrets} {
		if f1 := rep.Families[f].F1(); f1 < minF1PIISecrets {
			t.Errorf("%s F1 %.3f < %.2f", f, f1, minF1PIISecrets)
		}
	}
	inj := rep.Families[guardrails.Injection]
	if inj.Recall() < minInjectionRecall || inj.Precision() < minInjectionPrecision {
		t.Errorf("injection recall %.3f (≥ %.2f) at precision %.3f (≥ %.2f)", inj.Recall(), minInjectionRecall,
			inj.Precision(), minInjectionPrecision)
	}
	if fp := float64(rep.HardNegativeFP) / float64(rep.HardNegatives); fp > maxHardNegativeFP {
		t.Errorf("hard negatives with a finding: %.1f%% > %.0f%%", 100*fp, 100*maxHardNegativeFP)
	}
}

// TestCommittedSetIsTheGeneratedOne: testdata/eval.jsonl.gz, the set for
// `portcullis guardrails scan -f`, is what Generate makes (run
// `go run ./tests/guardrails/cmd/guardrails-eval -write` after changing it).
func TestCommittedSetIsTheGeneratedOne(t *testing.T) {
	items, err := ReadItems("testdata/eval.jsonl.gz")
	if err != nil {
		t.Fatalf("read the committed set: %v (go run ./tests/guardrails/cmd/guardrails-eval -write)", err)
	}
	want := Generate(EvalSeed, EvalPerKind)
	if len(items) != len(want) {
		t.Fatalf("committed set has %d items, Generate %d", len(items), len(want))
	}
	for i := range want {
		if items[i].Text != want[i].Text || strings.Join(items[i].Labels, ",") != strings.Join(want[i].Labels, ",") {
			t.Fatalf("item %s differs from Generate's; regenerate testdata/eval.jsonl.gz", want[i].ID)
		}
	}
	if _, err := os.Stat("testdata/eval.jsonl"); err == nil {
		t.Fatal("testdata/eval.jsonl is not gzipped: its fake secrets would trip secret scanners")
	}
}

// TestMeasureSpeed: the speed measurement runs on a prompt with no findings and
// gives figures; how fast is for make bench to say, not a test.
func TestMeasureSpeed(t *testing.T) {
	s, err := MeasureSpeed(100)
	if err != nil {
		t.Fatal(err)
	}
	if s.AllP50 <= 0 || s.AllP99 < s.AllP50 || s.PIISecretsMBps <= 0 || s.StreamPerDelta <= 0 || s.PromptBytes < 1000 || s.PromptBytes > 1100 {
		t.Fatalf("figures: %+v", s)
	}
}
