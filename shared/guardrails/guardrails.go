// Package guardrails finds personal data, secrets and prompt injection in text: the
// detectors the data plane runs on the decoded messages of a request and of its
// answer, and the control plane's dry-run scan runs too. A detector returns
// findings, each a family, a type, a byte range and a score; the matched text goes
// only to the redactor (Redact), never to a log, a metric or an event.
//
// Cost: each detector first looks for the literals its matches must contain (an
// Aho–Corasick automaton over keywords, or a byte class such as '@' or a digit run)
// and runs a regular expression only around them, so clean text costs one pass.
//
// Everything here is safe for concurrent use.
package guardrails

import "sort"

// Family is a kind of content a policy acts on.
type Family string

// The families.
const (
	PII       Family = "pii"
	Secrets   Family = "secrets"
	Injection Family = "injection"
)

// Families lists every family.
var Families = []Family{PII, Secrets, Injection}

// Finding is one match: its family and type (e.g. pii/email, secrets/aws_key), the
// byte range [Start, End) of the text it covers, and a score from 0 to 1 (1 for a
// detector that validates, e.g. a Luhn-checked card).
type Finding struct {
	Family Family  `json:"family"`
	Type   string  `json:"type"`
	Start  int     `json:"start"`
	End    int     `json:"end"`
	Score  float64 `json:"score"`
}

// Label is the finding's "family.type" label as the evaluation sets name it, with
// the families' singular prefixes ("pii.email", "secret.aws_key", "injection").
func (f Finding) Label() string {
	switch f.Family {
	case Secrets:
		return "secret." + f.Type
	case Injection:
		return "injection"
	}
	return string(f.Family) + "." + f.Type
}

// sortFindings orders findings by start, longer first, and drops any that lies
// inside an earlier one of the same family.
func sortFindings(fs []Finding) []Finding {
	sort.SliceStable(fs, func(i, j int) bool {
		if fs[i].Start != fs[j].Start {
			return fs[i].Start < fs[j].Start
		}
		return fs[i].End > fs[j].End
	})
	out := fs[:0]
	for _, f := range fs {
		nested := false
		for _, g := range out {
			if g.Family == f.Family && f.Start >= g.Start && f.End <= g.End {
				nested = true
				break
			}
		}
		if !nested {
			out = append(out, f)
		}
	}
	return out
}
