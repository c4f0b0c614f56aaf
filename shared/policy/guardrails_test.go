package policy

import (
	"strings"
	"testing"
)

func TestGuardrailsOverAndProblems(t *testing.T) {
	yes, half := true, 0.5
	tier := Guardrails{PII: GuardrailFamily{Input: GuardrailRedact, Output: GuardrailFlag}, Injection: GuardrailFamily{Input: GuardrailBlock}}
	tenant := &Guardrails{PII: GuardrailFamily{Input: GuardrailBlock}, Pseudonymise: &yes}
	client := &Guardrails{Injection: GuardrailFamily{Threshold: &half, Classifier: ClassifierFailClosed}}
	got := tier.Over(tenant).Over(client).Over(nil)
	if got.PII.Input != GuardrailBlock || got.PII.Output != GuardrailFlag || got.Injection.Input != GuardrailBlock ||
		got.Injection.Threshold == nil || *got.Injection.Threshold != 0.5 || got.Injection.Classifier != ClassifierFailClosed || got.Pseudonymise == nil || !*got.Pseudonymise {
		t.Fatalf("merged %+v", got)
	}
	if !(Guardrails{}).IsZero() || got.IsZero() {
		t.Fatal("IsZero")
	}
	bad, neg := 2.0, -0.1
	problems := Guardrails{PII: GuardrailFamily{Input: "mask", Threshold: &half}, Injection: GuardrailFamily{Output: GuardrailRedact, Threshold: &bad},
		Secrets: GuardrailFamily{Threshold: &neg, Classifier: ClassifierFailOpen}}.Problems("g.")
	var fields []string
	for _, p := range problems {
		fields = append(fields, p[0])
	}
	if want := "g.pii.input g.pii.threshold g.secrets.classifier g.secrets.threshold g.injection.output g.injection.threshold"; strings.Join(fields, " ") != want {
		t.Fatalf("problem fields %v, want %s", fields, want)
	}
	if p := (Guardrails{Injection: GuardrailFamily{Classifier: "sometimes"}}).Problems(""); len(p) != 1 || p[0][0] != "injection.classifier" {
		t.Fatalf("an unknown classifier mode: %v", p)
	}
	if p := got.Problems(""); len(p) != 0 {
		t.Fatalf("a good policy has problems: %v", p)
	}
}
