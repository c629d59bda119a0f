package mask

import (
	"slices"
	"strings"
	"testing"

	"github.com/chaperone-dev/chaperone/pkg/mask/corpus"
)

// TestCorpusRecall masks every corpus sample and requires that at least
// 99% of secrets are gone, per rule and overall; it logs how often the
// intended rule was the one that fired and the false positives per MB of
// look-alike text.
func TestCorpusRecall(t *testing.T) {
	m, err := New(Options{Key: []byte("corpus"), PII: true})
	if err != nil {
		t.Fatal(err)
	}
	samples := corpus.Generate(1, 30)
	type tally struct{ n, leaked, own int }
	per := map[string]*tally{}
	var total, leaked int
	for _, s := range samples {
		tl := per[s.Rule]
		if tl == nil {
			tl = &tally{}
			per[s.Rule] = tl
		}
		out, fs := m.Mask(s.Text)
		tl.n++
		total++
		if s.Leaked(out) {
			tl.leaked++
			leaked++
			if tl.leaked <= 2 {
				t.Logf("leak %s/%s:\n%s\n-> %s", s.Rule, s.Context, s.Text, out)
			}
		}
		if slices.Contains(RuleIDs(fs), s.Rule) {
			tl.own++
		}
	}
	for _, id := range corpus.Rules() {
		tl := per[id]
		if tl.leaked*100 > tl.n {
			t.Errorf("rule %s: %d of %d secrets leaked", id, tl.leaked, tl.n)
		}
		if tl.own*10 < tl.n*9 {
			t.Logf("rule %s fired on only %d of %d of its samples (others masked them)", id, tl.own, tl.n)
		}
	}
	recall := 1 - float64(leaked)/float64(total)
	t.Logf("recall %.4f over %d samples of %d rules (%d rules in the set)", recall, total, len(per), len(m.Rules()))
	if recall < 0.99 {
		t.Errorf("recall %.4f < 0.99", recall)
	}

	// Rules the corpus does not cover are untested: fail so that adding a
	// rule means adding samples.
	covered := map[string]bool{}
	for _, id := range corpus.Rules() {
		covered[id] = true
	}
	for _, id := range m.Rules() {
		if !covered[id] && id != "gcp-private-key-id" {
			t.Errorf("rule %s has no corpus samples", id)
		}
	}
}

func TestFalsePositives(t *testing.T) {
	m, err := New(Options{Key: []byte("corpus")})
	if err != nil {
		t.Fatal(err)
	}
	negs := corpus.Negatives(1, 4000)
	text := strings.Join(negs, "\n")
	fired := map[string]int{}
	n := 0
	for _, line := range negs {
		_, fs := m.Mask(line)
		for _, f := range fs {
			fired[f.Rule]++
			n++
			if fired[f.Rule] <= 2 {
				t.Logf("false positive %s in %q", f.Rule, line)
			}
		}
	}
	mb := float64(len(text)) / (1 << 20)
	t.Logf("false positives: %d in %.2f MB of look-alike text (%.1f per MB): %v", n, mb, float64(n)/mb, fired)
}
