package guardrails

// automaton is an Aho–Corasick automaton over ASCII-lowercased bytes: one pass over
// a text finds every occurrence of any of its keywords. It is immutable once built.
type automaton struct {
	next  [][256]int32 // goto function, completed with the failure links
	out   [][]int      // keyword indexes ending at each state
	words []string
}

// newAutomaton builds the automaton of keywords (matched case-insensitively).
func newAutomaton(keywords []string) *automaton {
	a := &automaton{next: make([][256]int32, 1), out: make([][]int, 1), words: keywords}
	for i := range a.next[0] {
		a.next[0][i] = -1
	}
	for k, w := range keywords {
		s := int32(0)
		for i := 0; i < len(w); i++ {
			c := lower(w[i])
			if a.next[s][c] < 0 {
				var row [256]int32
				for j := range row {
					row[j] = -1
				}
				a.next = append(a.next, row)
				a.out = append(a.out, nil)
				a.next[s][c] = int32(len(a.next) - 1)
			}
			s = a.next[s][c]
		}
		a.out[s] = append(a.out[s], k)
	}
	// Breadth first: failure links, folded into the goto function.
	fail := make([]int32, len(a.next))
	var queue []int32
	for c := range 256 {
		if t := a.next[0][c]; t >= 0 {
			fail[t] = 0
			queue = append(queue, t)
		} else {
			a.next[0][c] = 0
		}
	}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		a.out[s] = append(a.out[s], a.out[fail[s]]...)
		for c := range 256 {
			t := a.next[s][c]
			if t < 0 {
				a.next[s][c] = a.next[fail[s]][c]
				continue
			}
			fail[t] = a.next[fail[s]][c]
			queue = append(queue, t)
		}
	}
	return a
}

// each calls fn with the keyword index and end offset of every match in text.
func (a *automaton) each(text string, fn func(keyword, end int)) {
	s := int32(0)
	for i := 0; i < len(text); i++ {
		s = a.next[s][lower(text[i])]
		for _, k := range a.out[s] {
			fn(k, i+1)
		}
	}
}

// any reports whether text holds any keyword.
func (a *automaton) any(text string) bool {
	s := int32(0)
	for i := 0; i < len(text); i++ {
		s = a.next[s][lower(text[i])]
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
