package mask

import (
	"encoding/binary"
	"unsafe"
)

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
	// next maps a state's row (state*nsym) plus a symbol to the next
	// state's row, with acceptBit set when keywords end there: a scan
	// step is one load, with no multiplication and no look at out.
	next []uint32
	out  [][]hit // per state, every keyword ending there (via failure links too)
	// starts holds the first two bytes of every keyword, in every case
	// (a bit per pair, indexed by the pair as a little-endian load yields
	// it: second byte high; fold lower-cases ASCII letters), and single the
	// keywords of one byte: positions where no keyword starts are skipped
	// without stepping the automaton, which is most of them in plain
	// text.
	fold   [256]byte
	starts [1 << 16 / 64]uint64
	single [256]bool
	// A pair that passes starts is confirmed by its third byte: tri holds
	// a hash of the first three bytes of every longer keyword (each byte
	// or'ed with 0x20, which folds ASCII case and keeps every match), and
	// short the pairs (indexed as in starts) that need no third byte
	// (keywords of two bytes, and any pair led by a keyword of one). Plain
	// text passes the pair test at about one position in ten, the triple
	// test far more rarely, so the automaton is seldom stepped for
	// nothing.
	tri   [1 << triBits / 64]uint64
	short [1 << 16 / 64]uint64
}

// triBits is the size of the triple filter's hash, in bits.
const triBits = 16

// triHash hashes x, three bytes of text in its low bytes (little-endian,
// the bytes above ignored), folded.
func triHash(x uint64) uint32 {
	k := uint32(x)<<8 | 0x20202000
	return (k * 0x9E3779B1) >> (32 - triBits)
}

// le is the bytes a, b, c as a little-endian load of them yields them.
func le(a, b, c byte) uint64 { return uint64(a) | uint64(b)<<8 | uint64(c)<<16 }

// addStart marks the pair a, b in every case.
func (m *keywordMatcher) addStart(a, b byte) {
	for _, x := range m.cases(a) {
		for _, y := range m.cases(b) {
			p := uint16(y)<<8 | uint16(x)
			m.starts[p>>6] |= 1 << (p & 63)
		}
	}
}

// cases returns the bytes that fold to c's fold.
func (m *keywordMatcher) cases(c byte) []byte {
	var out []byte
	for x := range 256 {
		if m.fold[x] == m.fold[c] {
			out = append(out, byte(x))
		}
	}
	return out
}

// acceptBit marks a transition into a state where keywords end.
const acceptBit = 1 << 31

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
	delta := make([]int32, n*nsym)
	fail := make([]int32, n)
	queue := make([]int32, 0, n)
	for c := range nsym {
		if nx, ok := goTo[0][uint8(c)]; ok {
			delta[c] = nx
			queue = append(queue, nx)
		}
	}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		m.out[s] = append(m.out[s], m.out[fail[s]]...)
		for c := range nsym {
			if nx, ok := goTo[s][uint8(c)]; ok {
				fail[nx] = delta[int(fail[s])*nsym+c]
				delta[int(s)*nsym+c] = nx
				queue = append(queue, nx)
			} else {
				delta[int(s)*nsym+c] = delta[int(fail[s])*nsym+c]
			}
		}
	}
	for c := range 256 {
		m.fold[c] = byte(c)
		if c >= 'A' && c <= 'Z' {
			m.fold[c] = byte(c) + 'a' - 'A'
		}
	}
	for _, ks := range keywords {
		for _, k := range ks {
			if len(k) == 1 {
				// Any pair starting with it, and the last byte alone.
				for _, c := range m.cases(k[0]) {
					m.single[c] = true
					for b := range 256 {
						m.addStart(c, byte(b))
						p := uint16(b)<<8 | uint16(c)
						m.short[p>>6] |= 1 << (p & 63)
					}
				}
				continue
			}
			m.addStart(k[0], k[1])
			if len(k) == 2 {
				for _, x := range m.cases(k[0]) {
					for _, y := range m.cases(k[1]) {
						p := uint16(y)<<8 | uint16(x)
						m.short[p>>6] |= 1 << (p & 63)
					}
				}
				continue
			}
			h := triHash(le(k[0], k[1], k[2]))
			m.tri[h>>6] |= 1 << (h & 63)
		}
	}
	// Symbol 0 (bytes in no keyword) always returns to the root.
	m.next = make([]uint32, len(delta))
	for i, st := range delta {
		m.next[i] = uint32(st) * uint32(nsym)
		if len(m.out[st]) > 0 {
			m.next[i] |= acceptBit
		}
	}
	return m
}

// may reports whether a keyword may start at the low bytes of x, three
// bytes of text as a little-endian load yields them.
func (m *keywordMatcher) may(x uint64) bool {
	p := uint16(x)
	if m.starts[p>>6]&(1<<(p&63)) == 0 {
		return false
	}
	if m.short[p>>6]&(1<<(p&63)) != 0 {
		return true
	}
	h := triHash(x)
	return m.tri[h>>6]&(1<<(h&63)) != 0
}

// skip returns the first position from i on where a keyword may start
// (len(s)-2 or len(s)-1 when only two bytes or one are left: those go to
// the automaton).
func (m *keywordMatcher) skip(s string, i int) int {
	// The string's bytes, only read.
	b := unsafe.Slice(unsafe.StringData(s), len(s))
	// Six positions per eight bytes read: each needs three.
	for ; i+8 <= len(b); i += 6 {
		w := binary.LittleEndian.Uint64(b[i:])
		switch {
		case m.may(w):
			return i
		case m.may(w >> 8):
			return i + 1
		case m.may(w >> 16):
			return i + 2
		case m.may(w >> 24):
			return i + 3
		case m.may(w >> 32):
			return i + 4
		case m.may(w >> 40):
			return i + 5
		}
	}
	for ; i+2 < len(b); i++ {
		if m.may(le(b[i], b[i+1], b[i+2])) {
			return i
		}
	}
	return i
}

// scan calls fn for every keyword occurrence in s with its rule and the
// occurrence's start and end.
func (m *keywordMatcher) scan(s string, fn func(rule, start, end int)) {
	next, sym := m.next, &m.sym
	nsym := uint32(m.nsym)
	row := uint32(0)
	n := len(s)
	for i := 0; i < n; i++ {
		if row == 0 {
			i = m.skip(s, i)
			if i+1 == n && !m.single[s[i]] {
				return
			}
		}
		x := next[row+uint32(sym[s[i]])]
		row = x &^ acceptBit
		if x&acceptBit != 0 {
			for _, h := range m.out[row/nsym] {
				fn(int(h.rule), i+1-int(h.n), i+1)
			}
		}
	}
}
