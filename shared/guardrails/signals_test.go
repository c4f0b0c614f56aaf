package guardrails

import (
	"math/rand"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func genFromRegexp(r *rand.Rand, re *syntax.Regexp, b *strings.Builder) {
	switch re.Op {
	case syntax.OpLiteral:
		for _, c := range re.Rune {
			b.WriteRune(c)
		}
	case syntax.OpCharClass:
		// pick a random range, prefer printable ascii; for \W prefer space
		rs := re.Rune
		var cands []rune
		for i := 0; i < len(rs); i += 2 {
			for c := rs[i]; c <= rs[i+1] && c < 0x250; c++ {
				if c == ' ' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == ':' || c == '"' || c == ',' || c == '.' || c == '[' || c == ']' || c == '-' || c == '\'' || c >= 0xe0 && c <= 0xfc {
					cands = append(cands, c)
				}
			}
		}
		if len(cands) == 0 {
			b.WriteRune(rs[0])
			return
		}
		if slices.Contains(cands, ' ') && r.Intn(2) == 0 {
			b.WriteRune(' ')
			return
		}
		b.WriteRune(cands[r.Intn(len(cands))])
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		b.WriteByte('x')
	case syntax.OpCapture:
		genFromRegexp(r, re.Sub[0], b)
	case syntax.OpConcat:
		for _, s := range re.Sub {
			genFromRegexp(r, s, b)
		}
	case syntax.OpAlternate:
		genFromRegexp(r, re.Sub[r.Intn(len(re.Sub))], b)
	case syntax.OpQuest:
		if r.Intn(2) == 0 {
			genFromRegexp(r, re.Sub[0], b)
		}
	case syntax.OpStar, syntax.OpPlus, syntax.OpRepeat:
		lo, hi := 0, 3
		if re.Op == syntax.OpPlus {
			lo = 1
		}
		if re.Op == syntax.OpRepeat {
			lo, hi = re.Min, re.Max
			if hi < 0 || hi > lo+3 {
				hi = lo + 3
			}
		}
		n := lo + r.Intn(hi-lo+1)
		for i := 0; i < n; i++ {
			genFromRegexp(r, re.Sub[0], b)
		}
	}
}

func gatedSignal(norm string, i int) bool {
	words := injectionWords.words
	var hits []wordHit
	injectionWords.each(norm, func(k, end int) { hits = append(hits, wordHit{k, end - len(words[k]), end}) })
	for hi, h := range hits {
		if !slices.Contains(leadSignals[h.k], i) {
			continue
		}
		if h.start > 0 && wordByte(words[h.k][0]) && wordBefore(norm, h.start) {
			continue
		}
		limit := min(len(norm), h.start+signalWindow)
		if alsoOf[i] != nil && !alsoFollows(hits, hi, alsoOf[i], h.start, limit) {
			continue
		}
		s := &injectionSignals[i]
		m := s.re.FindStringIndex(norm[h.start:limit])
		if m != nil && (s.unless == nil || !s.unless.MatchString(norm[h.start:h.start+m[1]])) {
			return true
		}
	}
	return false
}

func TestGatedSignalsFindWhatTheirPatternsMatch(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	seen := map[string]bool{}
	for i, s := range injectionSignals {
		pat := strings.TrimPrefix(s.re.String(), "^")
		un := regexp.MustCompile(pat)
		tree, _ := syntax.Parse(pat, syntax.Perl)
		tree = tree.Simplify()
		misses := 0
		for n := 0; n < 5000 && misses < 4; n++ {
			var b strings.Builder
			b.WriteString("ok. ")
			genFromRegexp(r, tree, &b)
			b.WriteString(" .")
			norm, _ := normalise(b.String())
			if !un.MatchString(norm) || norm != b.String() {
				continue
			}
			if !gatedSignal(norm, i) {
				m := un.FindString(norm)
				key := strings.Fields(m)[0]
				if seen[key+string(rune(i))] {
					continue
				}
				seen[key+string(rune(i))] = true
				misses++
				t.Errorf("signal %d (%s %.2f) misses %q", i, s.typ, s.score, m)
			}
		}
	}
}

// maxMatchBytes is the most bytes a match of re can take, and false when it is
// unbounded.
func maxMatchBytes(re *syntax.Regexp) (int, bool) {
	switch re.Op {
	case syntax.OpLiteral:
		n := 0
		for _, r := range re.Rune {
			n += utf8.RuneLen(r)
		}
		return n, true
	case syntax.OpCharClass: // its widest character
		return utf8.RuneLen(min(re.Rune[len(re.Rune)-1], utf8.MaxRune)), true
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return utf8.UTFMax, true
	case syntax.OpCapture:
		return maxMatchBytes(re.Sub[0])
	case syntax.OpConcat, syntax.OpAlternate:
		total := 0
		for _, s := range re.Sub {
			n, ok := maxMatchBytes(s)
			if !ok {
				return 0, false
			}
			if re.Op == syntax.OpConcat {
				total += n
			} else {
				total = max(total, n)
			}
		}
		return total, true
	case syntax.OpQuest:
		return maxMatchBytes(re.Sub[0])
	case syntax.OpRepeat:
		if re.Max < 0 {
			return 0, false
		}
		n, ok := maxMatchBytes(re.Sub[0])
		return n * re.Max, ok
	case syntax.OpStar, syntax.OpPlus:
		return 0, false
	}
	return 0, true // empty-width assertions
}

// TestSignalsFitTheWindow: no signal's match can be longer than signalWindow, so
// reading only that much from a lead misses nothing the pattern would match.
func TestSignalsFitTheWindow(t *testing.T) {
	for i, s := range injectionSignals {
		tree, err := syntax.Parse(s.re.String(), syntax.Perl)
		if err != nil {
			t.Fatal(err)
		}
		n, ok := maxMatchBytes(tree)
		if !ok || n > signalWindow {
			t.Errorf("signal %d (%s): a match may take %d bytes (bounded %v), the window is %d", i, s.typ, n, ok, signalWindow)
		}
	}
}
