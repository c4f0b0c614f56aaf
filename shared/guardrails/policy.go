package guardrails

import "github.com/portcullis-gw/portcullis/shared/policy"

// Action is what a policy does with a family's findings in one direction.
type Action uint8

// The actions, weakest first.
const (
	Off Action = iota
	Flag
	RedactAction
	Block
)

// String is the action's name in the policy (policy.GuardrailOff …).
func (a Action) String() string {
	switch a {
	case Flag:
		return policy.GuardrailFlag
	case RedactAction:
		return policy.GuardrailRedact
	case Block:
		return policy.GuardrailBlock
	}
	return policy.GuardrailOff
}

func parseAction(s string) Action {
	switch s {
	case policy.GuardrailFlag:
		return Flag
	case policy.GuardrailRedact:
		return RedactAction
	case policy.GuardrailBlock:
		return Block
	}
	return Off
}

// Direction is which way the text goes.
type Direction uint8

// The directions.
const (
	Input  Direction = iota // the request: every message, system prompts and tool results
	Output                  // the answer
)

// String is the direction's name: "input" or "output".
func (d Direction) String() string {
	if d == Output {
		return "output"
	}
	return "input"
}

// Policy is a compiled guardrail policy: each family's action per direction, the
// injection threshold and pseudonymisation. It is immutable and safe for concurrent
// use.
type Policy struct {
	actions            [2][3]Action // [direction][family index]
	InjectionThreshold float64
	Pseudonymise       bool
	// Classifier is the injection family's classifier mode (policy.Classifier*;
	// "" and off: not asked).
	Classifier string
}

// familyIndex orders the families as Families does.
func familyIndex(f Family) int {
	switch f {
	case Secrets:
		return 1
	case Injection:
		return 2
	}
	return 0
}

// Compile compiles g; nil when every family is off both ways, so that a client
// without guardrails costs one nil check per request.
func Compile(g policy.Guardrails) *Policy {
	p := &Policy{InjectionThreshold: DefaultThreshold}
	for i, f := range []policy.GuardrailFamily{g.PII, g.Secrets, g.Injection} {
		p.actions[Input][i] = parseAction(f.Input)
		p.actions[Output][i] = parseAction(f.Output)
	}
	if t := g.Injection.Threshold; t != nil {
		p.InjectionThreshold = *t
	}
	p.Pseudonymise = g.Pseudonymise != nil && *g.Pseudonymise
	if c := g.Injection.Classifier; c == policy.ClassifierFailOpen || c == policy.ClassifierFailClosed {
		p.Classifier = c
	}
	if !p.On(Input) && !p.On(Output) {
		return nil
	}
	return p
}

// Action is family's action in direction d.
func (p *Policy) Action(d Direction, f Family) Action {
	if p == nil {
		return Off
	}
	return p.actions[d][familyIndex(f)]
}

// On reports whether any family is on in direction d.
func (p *Policy) On(d Direction) bool {
	if p == nil {
		return false
	}
	for _, a := range p.actions[d] {
		if a != Off {
			return true
		}
	}
	return false
}

// families lists the families on in direction d.
func (p *Policy) families(d Direction) []Family {
	var out []Family
	for i, a := range p.actions[d] {
		if a != Off {
			out = append(out, Families[i])
		}
	}
	return out
}

// Outcome is what a policy makes of one text in one direction.
type Outcome struct {
	// Findings are the findings of the families on, those of injection only from
	// the threshold on; each with the action taken.
	Findings []Applied
	// Text is the text to send on: redacted where a family redacts, else the text.
	Text string
	// Blocked is the first family whose findings block the text ("" for none).
	Blocked Family
	// Originals maps each placeholder of Text to the value it stands for.
	Originals map[string]string
}

// Applied is a finding with the action its family's policy takes.
type Applied struct {
	Finding
	Action Action `json:"-"`
}

// Apply scans text for the families on in direction d and applies their actions.
func (p *Policy) Apply(d Direction, text string) Outcome {
	r := NewRedactor()
	out := p.ApplyWith(d, text, r)
	out.Originals = r.Originals()
	return out
}

// ApplyWith is Apply redacting with r, so that the texts of one request share one
// numbering of placeholders; Outcome.Originals is left to r.
func (p *Policy) ApplyWith(d Direction, text string, r *Redactor) Outcome {
	out := Outcome{Text: text}
	if !p.On(d) {
		return out
	}
	var redact []Finding
	for _, f := range Scan(text, p.families(d)...) {
		if f.Family == Injection && f.Score < p.InjectionThreshold {
			continue
		}
		a := p.Action(d, f.Family)
		out.Findings = append(out.Findings, Applied{Finding: f, Action: a})
		switch a {
		case Block:
			if out.Blocked == "" {
				out.Blocked = f.Family
			}
		case RedactAction:
			redact = append(redact, f)
		}
	}
	if len(redact) > 0 && out.Blocked == "" {
		out.Text = r.Redact(text, redact)
	}
	return out
}
