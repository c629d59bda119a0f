package mask

// hit is a keyword of a rule ending at a state: the rule's index and the
// keyword's length.
type hit struct {
	rule uint16
	n    uint16
}

// keywordMatcher is an Aho-Corasick automaton over the rules' keywords,
// compiled to a dense DFA over a folded alphabet (bytes that occur in no
// keyword share one symbol), so a scan is one table lookup per byte.
type keywordMatcher struct {
	sym  [256]uint8
	nsym int
	// next holds the transitions as row offsets, state*nsym, so that a
	// step is one load and one add; an entry is negated (^row) when its
	// target state ends a keyword, which keeps the test for hits off the
	// common path.
	next  []int32
	delta []int32 // state*nsym + symbol -> next state (construction only)
	out   [][]hit // per state, every keyword ending there (via failure links too)
}

// newKeywordMatcher builds the automaton; keywords[i] are rule i's
// lowercase keywords.
func newKeywordMatcher(keywords [][]string) *keywordMatcher {
	m := &keywordMatcher{}
	nsym := 1
	for _, ks := range keywords {
		for _, k := range ks {
			for i := 0; i < len(k); i++ {
				if m.sym[k[i]] == 0 {
					m.sym[k[i]] = uint8(nsym)
					nsym++
				}
			}
		}
	}
	// Fold upper-case letters onto their lower-case symbol.
	for c := 'A'; c <= 'Z'; c++ {
		m.sym[c] = m.sym[c+'a'-'A']
	}
	m.nsym = nsym
	// Trie.
	goTo := []map[uint8]int32{{}}
	m.out = [][]hit{nil}
	for r, ks := range keywords {
		for _, k := range ks {
			s := int32(0)
			for i := 0; i < len(k); i++ {
				c := m.sym[k[i]]
				nx, ok := goTo[s][c]
				if !ok {
					nx = int32(len(goTo))
					goTo = append(goTo, map[uint8]int32{})
					m.out = append(m.out, nil)
					goTo[s][c] = nx
				}
				s = nx
			}
			m.out[s] = append(m.out[s], hit{rule: uint16(r), n: uint16(len(k))})
		}
	}
	// Breadth-first: failure links folded into a full transition table.
	n := len(goTo)
	m.delta = make([]int32, n*nsym)
	fail := make([]int32, n)
	queue := make([]int32, 0, n)
	for c := range nsym {
		if nx, ok := goTo[0][uint8(c)]; ok {
			m.delta[c] = nx
			queue = append(queue, nx)
		}
	}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		m.out[s] = append(m.out[s], m.out[fail[s]]...)
		for c := range nsym {
			if nx, ok := goTo[s][uint8(c)]; ok {
				fail[nx] = m.delta[int(fail[s])*nsym+c]
				m.delta[int(s)*nsym+c] = nx
				queue = append(queue, nx)
			} else {
				m.delta[int(s)*nsym+c] = m.delta[int(fail[s])*nsym+c]
			}
		}
	}
	// Symbol 0 (bytes in no keyword) always returns to the root.
	m.next = make([]int32, len(m.delta))
	for i, st := range m.delta {
		row := st * int32(nsym)
		if len(m.out[st]) > 0 {
			row = ^row
		}
		m.next[i] = row
	}
	m.delta = nil
	return m
}

// scan calls fn for every keyword occurrence in s with its rule and the
// occurrence's start and end.
func (m *keywordMatcher) scan(s string, fn func(rule, start, end int)) {
	next := m.next
	nsym := int32(m.nsym)
	row := int32(0)
	for i := 0; i < len(s); i++ {
		row = next[row+int32(m.sym[s[i]])]
		if row < 0 {
			row = ^row
			for _, h := range m.out[row/nsym] {
				fn(int(h.rule), i+1-int(h.n), i+1)
			}
		}
	}
}
