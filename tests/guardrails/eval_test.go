package guardrails

import (
	"os"
	"strings"
	"testing"

	"github.com/portcullis-gw/portcullis/shared/guardrails"
)

// The quality targets, on each evaluation set.
const (
	minF1PIISecrets       = 0.95
	minInjectionRecall    = 0.80
	minInjectionPrecision = 0.90
	maxHardNegativeFP     = 0.03
)

// TestEvalSetMeetsTheTargets: PII and secrets F1 ≥ 0.95, injection recall ≥ 0.80
// at precision ≥ 0.90, and at most 3% of hard negatives with any finding, on the
// generated set (EvalSeed, EvalPerKind items of each kind) and on the hand-written
// cases (CasesFiles).
func TestEvalSetMeetsTheTargets(t *testing.T) {
	sets := []struct {
		name  string
		items []Item
	}{
		{"generated set", Generate(EvalSeed, EvalPerKind)},
	}
	for _, f := range CasesFiles {
		cases, err := ReadCases(f, CasesSeed)
		if err != nil {
			t.Fatal(err)
		}
		sets = append(sets, struct {
			name  string
			items []Item
		}{f, cases})
	}
	for _, set := range sets {
		t.Run(set.name, func(t *testing.T) { meetsTargets(t, set.name, set.items) })
	}
}

func meetsTargets(t *testing.T, name string, items []Item) {
	if len(items) < 100 {
		t.Fatalf("%s: only %d items", name, len(items))
	}
	rep := Evaluate(items)
	var b strings.Builder
	rep.Print(&b, name)
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
	if rep.HardNegatives == 0 {
		t.Fatal("no hard negatives")
	}
	if fp := float64(rep.HardNegativeFP) / float64(rep.HardNegatives); fp > maxHardNegativeFP {
		t.Errorf("hard negatives with a finding: %.1f%% > %.0f%%", 100*fp, 100*maxHardNegativeFP)
	}
}

// TestCasesHoldNoLiteralSecrets: the hand-written cases carry their secrets as
// slots, so that the file is plain text no secret scanner trips on.
func TestCasesHoldNoLiteralSecrets(t *testing.T) {
	for _, f := range CasesFiles {
		raw, err := ReadItems(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range raw {
			if fs := guardrails.Scan(it.Text, guardrails.Secrets); len(fs) > 0 {
				t.Errorf("%s: %s holds a literal %s: use a {{SLOT}}", f, it.ID, fs[0].Type)
			}
		}
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
