package guardrails

import (
	"strings"
	"unicode/utf8"
)

// Stream limits.
const (
	// contextBytes of text already released are scanned again with the held text,
	// so that a value whose name went out earlier ("password: ", "Tel.") is still
	// recognised; they cannot be changed any more.
	contextBytes = 128
	// maxHold bounds the text held back: past it the oldest part is released.
	maxHold = 4 << 10
	// maxKeyHold bounds how long a private key block is held waiting for its END.
	maxKeyHold = 16 << 10
	// injectionEvery is how much new text makes the injection detector look at the
	// whole answer again; and injectionWindow how much of the answer it looks at.
	injectionEvery  = 2 << 10
	injectionWindow = 64 << 10
)

// Stream applies a policy to text that arrives in pieces (a streamed answer):
// Push takes each delta and returns the text that may go to the client now,
// holding back the smallest tail that could still grow into a finding (the last
// word, the groups of a number being written, a private key block without its
// END); Flush releases the rest when the answer ends. A finding split over two
// deltas is caught whole, and none of it is released before it is judged. It is not
// safe for concurrent use.
type Stream struct {
	p        *Policy
	d        Direction
	r        *Redactor
	families []Family // PII and secrets, where on
	pending  string   // received, not yet released
	context  string   // the last contextBytes released, as received
	// all is the answer so far (up to injectionWindow), for the injection
	// detector; scanned is its length at the last look.
	all       strings.Builder
	scanned   int
	injection bool // injection is on and not yet found
	// Findings are the findings applied so far.
	Findings []Applied
}

// NewStream returns a stream under p in direction d, redacting with r (nil: a
// redactor of its own).
func (p *Policy) NewStream(d Direction, r *Redactor) *Stream {
	if r == nil {
		r = NewRedactor()
	}
	s := &Stream{p: p, d: d, r: r, injection: p.Action(d, Injection) != Off}
	for _, f := range []Family{PII, Secrets} {
		if p.Action(d, f) != Off {
			s.families = append(s.families, f)
		}
	}
	return s
}

// Push adds delta and returns the text to release now, redacted where the policy
// redacts, and the family that blocks the answer ("" for none; nothing more is to
// be sent then).
func (s *Stream) Push(delta string) (string, Family) {
	s.pending += delta
	if s.injection && s.all.Len() < injectionWindow {
		s.all.WriteString(delta)
	}
	if f := s.lookForInjection(false); f != "" {
		return "", f
	}
	return s.release(holdPoint(s.pending))
}

// Flush releases everything held, at the end of the answer.
func (s *Stream) Flush() (string, Family) {
	if f := s.lookForInjection(true); f != "" {
		return "", f
	}
	return s.release(len(s.pending))
}

// lookForInjection scores the answer so far, every injectionEvery bytes and at the
// end; an injection counts once.
func (s *Stream) lookForInjection(final bool) Family {
	if !s.injection || !final && s.all.Len()-s.scanned < injectionEvery {
		return ""
	}
	s.scanned = s.all.Len()
	typ, score := injectionScore(s.all.String(), 0)
	if score < s.p.InjectionThreshold || score < minReport {
		return ""
	}
	s.injection = false
	a := s.p.Action(s.d, Injection)
	s.Findings = append(s.Findings, Applied{Finding: Finding{Family: Injection, Type: typ, Start: 0, End: s.all.Len(), Score: score}, Action: a})
	if a == Block {
		return Injection
	}
	return ""
}

// release scans the held text and releases its first cut bytes (less, if a finding
// straddles the cut).
func (s *Stream) release(cut int) (string, Family) {
	if len(s.pending)-cut > maxHold {
		cut = len(s.pending) - maxHold
	}
	for cut > 0 && cut < len(s.pending) && !utf8.RuneStart(s.pending[cut]) {
		cut--
	}
	if len(s.families) == 0 { // only injection, judged on the whole answer: nothing to hold
		out := s.pending
		s.pending = ""
		return out, ""
	}
	if cut <= 0 {
		return "", ""
	}
	window := s.context + s.pending
	shift := len(s.context)
	var apply []Finding
	for _, f := range Scan(window, s.families...) {
		f.Start -= shift
		f.End -= shift
		switch {
		case f.End <= 0: // all in text already released
			continue
		case f.Start < 0: // begun in released text: what is held of it is covered
			f.Start = 0
		}
		if f.Start >= cut {
			continue
		}
		if f.End > cut { // straddles the cut: hold it whole
			cut = f.Start
			continue
		}
		apply = append(apply, f)
	}
	if cut <= 0 {
		return "", ""
	}
	var redact []Finding
	blocked := Family("")
	for _, f := range apply {
		if f.End > cut {
			continue
		}
		a := s.p.Action(s.d, f.Family)
		s.Findings = append(s.Findings, Applied{Finding: f, Action: a})
		switch a {
		case Block:
			if blocked == "" {
				blocked = f.Family
			}
		case RedactAction:
			redact = append(redact, f)
		}
	}
	if blocked != "" {
		return "", blocked
	}
	text := s.pending[:cut]
	out := text
	if len(redact) > 0 {
		out = s.r.Redact(text, redact)
	}
	s.context += text
	if len(s.context) > contextBytes {
		c := len(s.context) - contextBytes
		for c < len(s.context) && !utf8.RuneStart(s.context[c]) {
			c++
		}
		s.context = s.context[c:]
	}
	s.pending = s.pending[cut:]
	return out, ""
}

// holdPoint is where the text that may still grow into a finding begins: a private
// key block without its END, else the last word, with the groups of a number being
// written before it ("+49 151 23", "4111 1111 11", "DE89 3704").
func holdPoint(s string) int {
	if i := strings.LastIndex(strings.ToUpper(s), "-----BEGIN"); i >= 0 && !strings.Contains(strings.ToUpper(s[i:]), "-----END") &&
		len(s)-i < maxKeyHold {
		return i
	}
	i := len(s)
	for i > 0 && !isSpaceByte(s[i-1]) {
		i--
	}
	for {
		k := i
		for k > 0 && (s[k-1] == ' ' || s[k-1] == '-' || s[k-1] == '/' || s[k-1] == '.' || s[k-1] == '(' || s[k-1] == ')') && i-k < 3 {
			k--
		}
		if k == i || k == 0 {
			return i
		}
		start := k
		for start > 0 && !isSpaceByte(s[start-1]) {
			start--
		}
		w := s[start:k]
		if w == "" || len(w) > 8 || !numberGroup(w) {
			return i
		}
		i = start
	}
}

// numberGroup reports whether w may be a group of a number being written: digits
// (and letters, for an IBAN's groups), or a "+" country code, with a digit.
func numberGroup(w string) bool {
	digit := false
	for i := 0; i < len(w); i++ {
		c := w[i]
		switch {
		case isDigit(c):
			digit = true
		case isLetter(c) || c == '+' || c == '(' || c == ')' || c == '-':
		default:
			return false
		}
	}
	return digit
}

func isSpaceByte(c byte) bool { return c == ' ' || c == '\n' || c == '\t' || c == '\r' }
