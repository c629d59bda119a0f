package mask

import (
	"slices"
	"strings"
	"testing"
)

// naiveHits finds every keyword occurrence by brute force.
func naiveHits(keywords [][]string, s string) [][3]int {
	low := strings.ToLower(s) // keywords are ASCII: offsets stay put only for ASCII input
	var out [][3]int
	for i := range low {
		for r, ks := range keywords {
			for _, k := range ks {
				if strings.HasPrefix(low[i:], k) {
					out = append(out, [3]int{r, i, i + len(k)})
				}
			}
		}
	}
	return out
}

func scanHits(m *keywordMatcher, s string) [][3]int {
	var out [][3]int
	m.scan(s, func(r, start, end int) { out = append(out, [3]int{r, start, end}) })
	return out
}

func sortHits(h [][3]int) {
	slices.SortFunc(h, func(a, b [3]int) int {
		for i := range 3 {
			if a[i] != b[i] {
				return a[i] - b[i]
			}
		}
		return 0
	})
}

var testKeywords = [][]string{{"token", "tok"}, {"q"}, {"://"}, {"sk-proj-", "sk-"}, {"password"}, {"@"}}

func TestKeywordScan(t *testing.T) {
	m := newKeywordMatcher(testKeywords)
	for _, s := range []string{"", "q", "Q", "xQ", "aq1", "TOKEN=x", "my-token tok", "https://u:p@h", "sk-proj-abc SK-x",
		"PassWord@@", "tokentoken", "t", "to"} {
		got, want := scanHits(m, s), naiveHits(testKeywords, s)
		sortHits(got)
		sortHits(want)
		if !slices.Equal(got, want) {
			t.Errorf("%q: scan %v, want %v", s, got, want)
		}
	}
}

// FuzzKeywordScan checks the automaton and its skip-ahead against brute
// force.
func FuzzKeywordScan(f *testing.F) {
	f.Add("export TOKEN=sk-proj-x https://a:b@c q")
	f.Add("tokepassworq")
	m := newKeywordMatcher(testKeywords)
	f.Fuzz(func(t *testing.T, s string) {
		for i := 0; i < len(s); i++ {
			if s[i] >= 0x80 {
				return // ToLower would move offsets
			}
		}
		got, want := scanHits(m, s), naiveHits(testKeywords, s)
		sortHits(got)
		sortHits(want)
		if !slices.Equal(got, want) {
			t.Fatalf("%q: scan %v, want %v", s, got, want)
		}
	})
}

// FuzzKeywordScanBuiltin checks the skip-ahead filters with the built-in
// keywords (two-byte ones among them) and upper-case variants.
func FuzzKeywordScanBuiltin(f *testing.F) {
	f.Add("export SK123 Q~abc glpat-x ://u:p@h")
	f.Add("The build ran 42 tests in 3.1s; see https://ci.internal/job/1234")
	f.Add("xoxb-1 AKIA AIza ya29. sk")
	var keywords [][]string
	for _, r := range Builtin() {
		keywords = append(keywords, r.Keywords)
	}
	m := newKeywordMatcher(keywords)
	f.Fuzz(func(t *testing.T, s string) {
		for i := 0; i < len(s); i++ {
			if s[i] >= 0x80 {
				return // ToLower would move offsets
			}
		}
		got, want := scanHits(m, s), naiveHits(keywords, s)
		sortHits(got)
		sortHits(want)
		if !slices.Equal(got, want) {
			t.Fatalf("%q: scan %v, want %v", s, got, want)
		}
	})
}
