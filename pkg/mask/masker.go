package mask

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Options configure a Masker.
type Options struct {
	// Rules replaces the built-in rule set when not nil (see Builtin).
	Rules []Rule
	// Key is the HMAC key of the tokens. The same key gives the same token
	// for the same secret; an empty key is replaced by a random one, so
	// tokens are then only consistent within this Masker.
	Key []byte
	// PII adds the rules marked PII (email addresses, payment card
	// numbers); without it they are skipped.
	PII bool
	// Custom rules are added to the rule set.
	Custom []RuleSpec
}

// Finding is one secret that was masked.
type Finding struct {
	// Rule is the id of the rule that found it.
	Rule string
	// Secret is the raw secret. Never log or record it.
	Secret string
	// Token is what replaced it.
	Token string
}

// Masker finds and masks secrets. It is safe for concurrent use.
type Masker struct {
	rules  []*compiled
	always []int // rules without keywords
	km     *keywordMatcher
	key    []byte

	// credNames memoises credentialHeader: header name -> bool.
	credNames sync.Map
	credCount atomic.Int32
}

// maxPasses bounds the re-masking that makes Mask idempotent: a pass can
// expose a match its neighbour's token used to hide (a boundary that was a
// letter is now ']').
const maxPasses = 4

// minExpand is the shortest secret whose every other occurrence in the
// input is masked too.
const minExpand = 6

// New compiles a Masker. Errors name the offending rule and wrap
// ErrInvalidRule.
func New(opts Options) (*Masker, error) {
	base := opts.Rules
	if base == nil {
		base = Builtin()
	}
	all := make([]Rule, 0, len(base)+len(opts.Custom))
	for _, r := range base {
		if r.PII && !opts.PII {
			continue
		}
		all = append(all, r)
	}
	for _, s := range opts.Custom {
		all = append(all, s.Rule())
	}
	if len(all) > 1<<16-1 {
		return nil, fmt.Errorf("%w: %d rules (max %d)", ErrInvalidRule, len(all), 1<<16-1)
	}
	m := &Masker{key: opts.Key}
	if len(m.key) == 0 {
		m.key = make([]byte, 32)
		_, _ = rand.Read(m.key)
	}
	seen := map[string]bool{}
	keywords := make([][]string, len(all))
	for i := range all {
		r := &all[i]
		if seen[r.ID] {
			return nil, fmt.Errorf("%w %q: duplicate id", ErrInvalidRule, r.ID)
		}
		seen[r.ID] = true
		c, err := compile(r)
		if err != nil {
			return nil, err
		}
		m.rules = append(m.rules, c)
		keywords[i] = r.Keywords
		if len(r.Keywords) == 0 {
			m.always = append(m.always, i)
		}
	}
	m.km = newKeywordMatcher(keywords)
	return m, nil
}

// Rules returns the ids of the rules in use.
func (m *Masker) Rules() []string {
	ids := make([]string, len(m.rules))
	for i, r := range m.rules {
		ids[i] = r.ID
	}
	return ids
}

// Token returns the token that replaces secret when rule finds it.
func (m *Masker) Token(rule, secret string) string {
	mac := hmac.New(sha256.New, m.key)
	mac.Write([]byte(secret))
	sum := mac.Sum(nil)
	return "[MASKED:" + rule + ":" + hex.EncodeToString(sum[:4]) + "]"
}

// tokenRE matches the tokens Mask writes; text inside them is never
// masked again.
var tokenRE = regexp.MustCompile(`\[MASKED:[a-z0-9][a-z0-9.-]{0,63}:[0-9a-f]{8}\]`)

// isToken reports whether s is exactly one token.
func isToken(s string) bool {
	return strings.HasPrefix(s, "[MASKED:") && len(tokenRE.FindString(s)) == len(s)
}

// Mask returns s with every secret replaced by its token, and what was
// found. Masking the result again changes nothing.
func (m *Masker) Mask(s string) (string, []Finding) {
	var all []Finding
	var changed []window
	for pass := range maxPasses {
		out, fs, regions := m.maskPass(s, changed, pass > 0)
		if len(fs) == 0 {
			break
		}
		all = append(all, fs...)
		s, changed = out, regions
	}
	return s, all
}

// MaskBytes is Mask for bytes. It returns b itself when nothing was found.
func (m *Masker) MaskBytes(b []byte) ([]byte, []Finding) {
	if len(b) == 0 {
		return b, nil
	}
	// The string view is only read while b is, and b is not modified.
	out, fs := m.Mask(unsafe.String(&b[0], len(b)))
	if len(fs) == 0 {
		return b, nil
	}
	return []byte(out), fs
}

// candidate is a gated match: the secret is s[start:end].
type candidate struct {
	start, end int
	rule       int
	tier       int
}

// consider gates a match of rule r found at offset off of s (loc is
// relative to off) and returns its candidate.
func (m *Masker) consider(s string, r, off int, loc []int) (candidate, bool) {
	c := m.rules[r]
	gs, ge := loc[2*c.group], loc[2*c.group+1]
	if gs < 0 {
		return candidate{}, false
	}
	ms, me, gs, ge := off+loc[0], off+loc[1], off+gs, off+ge
	key := ""
	if c.key > 0 && loc[2*c.key] >= 0 {
		key = s[off+loc[2*c.key] : off+loc[2*c.key+1]]
	}
	if !c.accept(s, ms, me, s[gs:ge], key) {
		return candidate{}, false
	}
	tier := 0
	switch {
	case c.PII:
		tier = 2
	case c.Generic:
		tier = 1
	}
	return candidate{start: gs, end: ge, rule: r, tier: tier}, true
}

// window is a byte range of the input a rule's regexp runs on.
type window struct{ lo, hi int }

// maskPass is one masking pass over s. When only is set, only matches that
// could reach into the changed regions are looked for: the rest of s is
// what the previous pass saw, and a match there was masked (and is a
// changed region now) or lost to one that was. It returns where the
// tokens were written in the result.
func (m *Masker) maskPass(s string, changed []window, only bool) (string, []Finding, []window) {
	var kept []candidate
	if only {
		kept = m.findNear(s, changed)
	} else {
		kept = m.find(s)
	}
	if len(kept) == 0 {
		return s, nil, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	fs := make([]Finding, 0, len(kept))
	regions := make([]window, 0, len(kept))
	last := 0
	for _, c := range kept {
		sec := s[c.start:c.end]
		tok := m.Token(m.rules[c.rule].ID, sec)
		b.WriteString(s[last:c.start])
		regions = append(regions, window{b.Len(), b.Len() + len(tok)})
		b.WriteString(tok)
		last = c.end
		fs = append(fs, Finding{Rule: m.rules[c.rule].ID, Secret: strings.Clone(sec), Token: tok})
	}
	b.WriteString(s[last:])
	return b.String(), fs, regions
}

// Span is a secret found in a text: s[Start:End], and the token that
// replaces it.
type Span struct {
	Start, End int
	Rule       string
	Token      string
}

// Find returns the secrets of s that one masking pass replaces, in
// order, without overlaps. Streaming maskers use it to tell where they
// may cut a text.
func (m *Masker) Find(s string) []Span {
	kept := m.find(s)
	out := make([]Span, len(kept))
	for i, c := range kept {
		id := m.rules[c.rule].ID
		out[i] = Span{Start: c.start, End: c.end, Rule: id, Token: m.Token(id, s[c.start:c.end])}
	}
	return out
}

// find returns the kept candidates of s, sorted by start.
func (m *Masker) find(s string) []candidate { return m.findNear(s, nil) }

// contextMargin is how far outside its match a rule looks: the name
// before a keyed value (extendName), an escape before a word start, the
// byte after a word end.
const contextMargin = 48

// touches reports whether a match within [lo, hi) of s, with its
// context, could reach a region of changed (sorted, disjoint).
func touches(changed []window, lo, hi int) bool {
	lo, hi = lo-contextMargin, hi+contextMargin
	i, _ := slices.BinarySearchFunc(changed, lo, func(w window, x int) int { return w.hi - x })
	return i < len(changed) && changed[i].lo < hi
}

// findNear is find; with changed set, only matches that could reach a
// changed region are looked for.
func (m *Masker) findNear(s string, changed []window) []candidate {
	if len(s) == 0 {
		return nil
	}
	near := changed != nil
	var protected [][]int
	if strings.Contains(s, "[MASKED:") {
		protected = tokenRE.FindAllStringIndex(s, -1)
	}
	var cands []candidate
	// wins and until are made on first use: most strings (header values,
	// clean bodies) hit no keyword at all.
	var wins map[int][]window
	var until []int
	m.km.scan(s, func(r, start, end int) {
		c := m.rules[r]
		if near && !touches(changed, start-c.window, end+c.window) {
			return
		}
		if c.anchored {
			if until != nil && start < until[r] {
				return
			}
			if c.Quick != nil && !c.Quick(s, start) {
				return
			}
			if loc := anchoredMatch(c, s, start); loc != nil {
				if cand, ok := m.consider(s, r, start, loc); ok {
					cands = append(cands, cand)
					if until == nil {
						until = make([]int, len(m.rules))
					}
					until[r] = start + loc[1]
				}
			}
			return
		}
		if wins == nil {
			wins = make(map[int][]window)
		}
		w := c.window
		lo, hi := max(0, start-w), min(len(s), end+w)
		ws := wins[r]
		if n := len(ws); n > 0 && lo <= ws[n-1].hi {
			ws[n-1].lo = min(ws[n-1].lo, lo)
			ws[n-1].hi = max(ws[n-1].hi, hi)
			return
		}
		wins[r] = append(ws, window{lo, hi})
	})
	for _, r := range m.always {
		if wins == nil {
			wins = make(map[int][]window, len(m.always))
		}
		if !near {
			wins[r] = []window{{0, len(s)}}
			continue
		}
		w := m.rules[r].window + contextMargin
		var ws []window
		for _, c := range changed {
			lo, hi := max(0, c.lo-w), min(len(s), c.hi+w)
			if n := len(ws); n > 0 && lo <= ws[n-1].hi {
				ws[n-1].hi = max(ws[n-1].hi, hi)
				continue
			}
			ws = append(ws, window{lo, hi})
		}
		wins[r] = ws
	}
	for r, ws := range wins {
		for _, w := range ws {
			for _, loc := range m.rules[r].re.FindAllStringSubmatchIndex(s[w.lo:w.hi], -1) {
				if cand, ok := m.consider(s, r, w.lo, loc); ok {
					cands = append(cands, cand)
				}
			}
		}
	}
	if len(cands) == 0 {
		return nil
	}
	slices.SortFunc(cands, func(a, b candidate) int {
		if a.tier != b.tier {
			return a.tier - b.tier
		}
		if la, lb := a.end-a.start, b.end-b.start; la != lb {
			return lb - la
		}
		if a.start != b.start {
			return a.start - b.start
		}
		return a.rule - b.rule
	})
	cover := newBitset(len(s))
	for _, p := range protected {
		cover.set(p[0], p[1])
	}
	var kept []candidate
	for _, c := range cands {
		if cover.any(c.start, c.end) {
			continue
		}
		cover.set(c.start, c.end)
		kept = append(kept, c)
	}
	kept = expand(s, kept, cover)
	slices.SortFunc(kept, func(a, b candidate) int { return a.start - b.start })
	return kept
}

// bitset marks covered bytes of the input.
type bitset []uint64

func newBitset(n int) bitset { return make(bitset, (n+63)/64) }

func (b bitset) set(start, end int) {
	for i := start; i < end; i++ {
		b[i>>6] |= 1 << (i & 63)
	}
}

func (b bitset) any(start, end int) bool {
	for i := start; i < end; i++ {
		if b[i>>6]&(1<<(i&63)) != 0 {
			return true
		}
	}
	return false
}

// RuleIDs returns the sorted, distinct rule ids of fs.
func RuleIDs(fs []Finding) []string {
	ids := make([]string, 0, len(fs))
	for _, f := range fs {
		ids = append(ids, f.Rule)
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// firstTry is the window an anchored expression first runs on: small
// inputs let package regexp use its backtracker instead of its slower NFA.
const firstTry = 256

// anchoredMatch runs c's anchored expression at s[start:].
func anchoredMatch(c *compiled, s string, start int) []int {
	end := min(len(s), start+c.window)
	if end-start > firstTry {
		loc := c.anchoredRE().FindStringSubmatchIndex(s[start : start+firstTry])
		if loc != nil && loc[1] < firstTry {
			return loc
		}
	}
	return c.anchoredRE().FindStringSubmatchIndex(s[start:end])
}

// expand adds every other occurrence of a kept secret that does not
// overlap what is covered: a secret found once is masked everywhere.
func expand(s string, kept []candidate, cover bitset) []candidate {
	type secret struct {
		text string
		c    candidate
	}
	var secs []secret
	seen := map[string]bool{}
	for _, c := range kept {
		sec := s[c.start:c.end]
		if len(sec) >= minExpand && !seen[sec] {
			seen[sec] = true
			secs = append(secs, secret{sec, c})
		}
	}
	add := func(st int, sc secret) {
		if !cover.any(st, st+len(sc.text)) {
			cover.set(st, st+len(sc.text))
			c := sc.c
			c.start, c.end = st, st+len(sc.text)
			kept = append(kept, c)
		}
	}
	if len(secs) <= 4 {
		for _, sc := range secs {
			for off := 0; ; {
				j := strings.Index(s[off:], sc.text)
				if j < 0 {
					break
				}
				add(off+j, sc)
				off += j + 1
			}
		}
		return kept
	}
	// Many secrets: one pass with a rolling hash of minExpand bytes over
	// s, a bit filter in front of a map of the secrets' prefixes.
	const k = minExpand
	var filter [1 << 10]uint64
	byPrefix := map[uint64][]int{}
	for i, sc := range secs {
		h := hashK(sc.text[:k])
		filter[(h>>48)&(1<<16-1)>>6] |= 1 << (h >> 48 & 63)
		byPrefix[h] = append(byPrefix[h], i)
	}
	var h uint64
	for i := 0; i < len(s); i++ {
		h = h*hashMul + uint64(s[i])
		if i >= k {
			h -= uint64(s[i-k]) * hashPowK
		}
		if i < k-1 || filter[(h>>48)&(1<<16-1)>>6]&(1<<(h>>48&63)) == 0 {
			continue
		}
		st := i + 1 - k
		for _, idx := range byPrefix[h] {
			if strings.HasPrefix(s[st:], secs[idx].text) {
				add(st, secs[idx])
			}
		}
	}
	return kept
}

const hashMul = 1099511628211

// hashPowK is hashMul to the power minExpand.
var hashPowK = func() uint64 {
	p := uint64(1)
	for range minExpand {
		p *= hashMul
	}
	return p
}()

func hashK(s string) uint64 {
	var h uint64
	for i := 0; i < len(s); i++ {
		h = h*hashMul + uint64(s[i])
	}
	return h
}
