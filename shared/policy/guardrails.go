package policy

import "fmt"

// Guardrail actions: what the data plane does with a family's findings in one
// direction. "" inherits (from the tier, for a tenant or client), and is off where
// nothing sets it.
const (
	GuardrailOff    = "off"
	GuardrailFlag   = "flag"   // audit and count the findings, change nothing
	GuardrailRedact = "redact" // replace each finding with a typed placeholder
	GuardrailBlock  = "block"  // refuse the request (input), or end the answer (output), with content_blocked
)

// GuardrailActions lists the actions, "" (inherit) aside.
var GuardrailActions = []string{GuardrailOff, GuardrailFlag, GuardrailRedact, GuardrailBlock}

// Classifier modes of the injection family: whether the data plane also asks its
// classifier (PORTCULLIS_GUARDRAILS_CLASSIFIER_URL), and what a failed call means.
const (
	ClassifierOff        = "off"
	ClassifierFailOpen   = "fail_open"   // a failed call counts as no finding
	ClassifierFailClosed = "fail_closed" // a failed call refuses the request
)

// Guardrails is a guardrail policy: a tier's, or a tenant's or client's override of
// it. Each field left empty inherits: client over tenant over tier.
type Guardrails struct {
	PII       GuardrailFamily `json:"pii"`
	Secrets   GuardrailFamily `json:"secrets"`
	Injection GuardrailFamily `json:"injection"`
	// Pseudonymise puts the originals of input placeholders back into the answer
	// the client receives, so that the model never sees them but the user does.
	Pseudonymise *bool `json:"pseudonymise,omitempty"`
}

// GuardrailFamily is one family's actions per direction, and the score from which
// a finding counts (injection; nil inherits, and is the detector's default).
type GuardrailFamily struct {
	Input     string   `json:"input,omitempty"`
	Output    string   `json:"output,omitempty"`
	Threshold *float64 `json:"threshold,omitempty"`
	// Classifier (injection only) is off, fail_open or fail_closed; "" inherits.
	Classifier string `json:"classifier,omitempty"`
}

// Over returns g with each field that o sets taken from o: o overrides g.
func (g Guardrails) Over(o *Guardrails) Guardrails {
	if o == nil {
		return g
	}
	g.PII = g.PII.over(o.PII)
	g.Secrets = g.Secrets.over(o.Secrets)
	g.Injection = g.Injection.over(o.Injection)
	if o.Pseudonymise != nil {
		g.Pseudonymise = o.Pseudonymise
	}
	return g
}

func (f GuardrailFamily) over(o GuardrailFamily) GuardrailFamily {
	if o.Input != "" {
		f.Input = o.Input
	}
	if o.Output != "" {
		f.Output = o.Output
	}
	if o.Threshold != nil {
		f.Threshold = o.Threshold
	}
	if o.Classifier != "" {
		f.Classifier = o.Classifier
	}
	return f
}

// IsZero reports whether g sets nothing.
func (g Guardrails) IsZero() bool {
	return g.PII == GuardrailFamily{} && g.Secrets == GuardrailFamily{} && g.Injection == GuardrailFamily{} && g.Pseudonymise == nil
}

// Problems lists what is wrong with g, each as a JSON field path (under prefix,
// e.g. "guardrails.") and a message: an unknown action, redact for injection (an
// injection finding is a whole message, which has no placeholder), a threshold
// outside 0 to 1, or one on a family that does not score.
func (g Guardrails) Problems(prefix string) [][2]string {
	var out [][2]string
	add := func(field, msg string) { out = append(out, [2]string{prefix + field, msg}) }
	fams := []struct {
		name string
		f    GuardrailFamily
	}{{"pii", g.PII}, {"secrets", g.Secrets}, {"injection", g.Injection}}
	for _, fam := range fams {
		for _, d := range [][2]string{{"input", fam.f.Input}, {"output", fam.f.Output}} {
			dir, a := d[0], d[1]
			switch {
			case a == "":
			case a != GuardrailOff && a != GuardrailFlag && a != GuardrailRedact && a != GuardrailBlock:
				add(fam.name+"."+dir, fmt.Sprintf("must be off, flag, redact or block (or left out to inherit), not %q", a))
			case fam.name == "injection" && a == GuardrailRedact:
				add(fam.name+"."+dir, "cannot be redact: an injection is a whole message, which has no placeholder; use flag or block")
			}
		}
		switch c := fam.f.Classifier; {
		case c == "":
		case fam.name != "injection":
			add(fam.name+".classifier", "is only for injection")
		case c != ClassifierOff && c != ClassifierFailOpen && c != ClassifierFailClosed:
			add(fam.name+".classifier", fmt.Sprintf("must be off, fail_open or fail_closed, not %q", c))
		}
		if t := fam.f.Threshold; t != nil {
			switch {
			case fam.name != "injection":
				add(fam.name+".threshold", "is only for injection, whose detector scores; PII and secrets are validated matches")
			case !(*t >= 0 && *t <= 1): // NaN too
				add(fam.name+".threshold", "must be a number from 0 to 1")
			}
		}
	}
	return out
}
