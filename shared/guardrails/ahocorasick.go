package guardrails

// automaton is an Aho–Corasick automaton over ASCII-lowercased bytes: one pass over
// a text finds every occurrence of any of its keywords. It is immutable once built.
// Bytes that occur in no keyword share one class, so that a state's row holds a
// column per byte the keywords use, not 256: the table stays small enough for the
// cache.
type automaton struct {
	class [256]uint8 // byte → column; 0 for bytes in no keyword
	width int        // columns per state
	next  []int32    // goto function, completed with the failure links: next[state*width+class]
	out   [][]int    // keyword indexes ending at each state
	words []string
}

// newAutomaton builds the automaton of keywords (matched case-insensitively).
func newAutomaton(keywords []string) *automaton {
	a := &automaton{words: keywords, width: 1}
	for _, w := range keywords {
		for i := 0; i < len(w); i++ {
			c := lower(w[i])
			if a.class[c] == 0 {
				a.class[c] = uint8(a.width)
				a.width++
				if 'a' <= c && c <= 'z' {
					a.class[c-'a'+'A'] = a.class[c]
				}
			}
		}
	}
	if a.width > 255 {
		panic("guardrails: automaton alphabet too large")
	}
	newState := func() int32 {
		for range a.width {
			a.next = append(a.next, -1)
		}
		a.out = append(a.out, nil)
		return int32(len(a.out) - 1)
	}
	newState()
	for k, w := range keywords {
		s := int32(0)
		for i := 0; i < len(w); i++ {
			c := int32(a.class[w[i]])
			if a.next[s*int32(a.width)+c] < 0 {
				t := newState()
				a.next[s*int32(a.width)+c] = t
			}
			s = a.next[s*int32(a.width)+c]
		}
		a.out[s] = append(a.out[s], k)
	}
	// Breadth first: failure links, folded into the goto function.
	w := int32(a.width)
	fail := make([]int32, len(a.out))
	var queue []int32
	for c := range w {
		if t := a.next[c]; t > 0 {
			fail[t] = 0
			queue = append(queue, t)
		} else {
			a.next[c] = 0
		}
	}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		a.out[s] = append(a.out[s], a.out[fail[s]]...)
		for c := range w {
			t := a.next[s*w+c]
			if t < 0 {
				a.next[s*w+c] = a.next[fail[s]*w+c]
				continue
			}
			fail[t] = a.next[fail[s]*w+c]
			queue = append(queue, t)
		}
	}
	return a
}

// each calls fn with the keyword index and end offset of every match in text.
func (a *automaton) each(text string, fn func(keyword, end int)) {
	s, w := int32(0), int32(a.width)
	for i := 0; i < len(text); i++ {
		s = a.next[s*w+int32(a.class[text[i]])]
		for _, k := range a.out[s] {
			fn(k, i+1)
		}
	}
}

// any reports whether text holds any keyword.
func (a *automaton) any(text string) bool {
	s, w := int32(0), int32(a.width)
	for i := 0; i < len(text); i++ {
		s = a.next[s*w+int32(a.class[text[i]])]
		if len(a.out[s]) > 0 {
			return true
		}
	}
	return false
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
