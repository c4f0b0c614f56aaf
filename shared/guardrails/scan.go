package guardrails

import (
	"fmt"
	"strings"
)

// Scan returns the findings of the given families in text (every family when none
// is given), in order of their start.
func Scan(text string, families ...Family) []Finding {
	if len(families) == 0 {
		families = Families
	}
	var out []Finding
	for _, f := range families {
		switch f {
		case PII:
			out = scanPII(text, out)
		case Secrets:
			out = scanSecrets(text, out)
		case Injection:
			out = scanInjection(text, out)
		}
	}
	return sortFindings(out)
}

// Redact replaces the bytes of each PII and secret finding with a placeholder that
// names its type and counts its values, such as [EMAIL_1]; a value met again gets
// the same placeholder. Injection findings, which cover a whole message, are left
// alone. It returns the redacted text and each placeholder's original value (for
// pseudonymisation: put them back into the answer). Where findings overlap, the
// first (and longer) one wins.
func Redact(text string, findings []Finding) (string, map[string]string) {
	r := NewRedactor()
	out := r.Redact(text, findings)
	return out, r.Originals()
}

// Redactor redacts several texts of one request with one numbering, so that a
// value has the same placeholder in every message and no two values share one. It
// is not safe for concurrent use.
type Redactor struct {
	originals map[string]string // placeholder → value
	byValue   map[string]string // type NUL value → placeholder
	counts    map[string]int    // by type
}

// NewRedactor returns a redactor with no placeholders yet.
func NewRedactor() *Redactor {
	return &Redactor{originals: map[string]string{}, byValue: map[string]string{}, counts: map[string]int{}}
}

// Redact is text with its PII and secret findings replaced (see package Redact).
func (r *Redactor) Redact(text string, findings []Finding) string {
	var b strings.Builder
	pos := 0
	for _, f := range findings {
		if f.Family == Injection || f.Start < pos || f.End > len(text) || f.Start >= f.End {
			continue
		}
		value := text[f.Start:f.End]
		key := f.Type + "\x00" + value
		ph, ok := r.byValue[key]
		if !ok {
			r.counts[f.Type]++
			ph = fmt.Sprintf("[%s_%d]", strings.ToUpper(f.Type), r.counts[f.Type])
			r.byValue[key] = ph
			r.originals[ph] = value
		}
		b.WriteString(text[pos:f.Start])
		b.WriteString(ph)
		pos = f.End
	}
	if pos == 0 {
		return text
	}
	b.WriteString(text[pos:])
	return b.String()
}

// Originals maps each placeholder made so far to its value.
func (r *Redactor) Originals() map[string]string { return r.originals }
