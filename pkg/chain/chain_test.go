package chain

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
)

func TestLinkDefinition(t *testing.T) {
	canonical := []byte(`{"v":1,"id":"x"}`)
	first := Link("", canonical)
	sum := sha256.Sum256(canonical)
	if want := hex.EncodeToString(sum[:]); first != want {
		t.Fatalf("first link = %s, want sha256(canonical) %s", first, want)
	}
	prevRaw, _ := hex.DecodeString(first)
	second := Link(first, canonical)
	sum = sha256.Sum256(append(prevRaw, canonical...))
	if want := hex.EncodeToString(sum[:]); second != want {
		t.Fatalf("second link = %s, want sha256(prev bytes || canonical) %s", second, want)
	}
	if !ValidHash(first) || !ValidHash(second) {
		t.Fatal("Link output is not a valid hash")
	}
}

func TestLinkBadPrev(t *testing.T) {
	for _, prev := range []string{"zz", strings.Repeat("A", 64), strings.Repeat("a", 63), strings.Repeat("g", 64)} {
		if got := Link(prev, []byte("x")); got != "" {
			t.Errorf("Link(%q) = %q, want empty", prev, got)
		}
	}
}

// build returns n records of a valid chain.
func build(n int) []Record {
	var out []Record
	prev := ""
	for i := 1; i <= n; i++ {
		c := []byte(fmt.Sprintf(`{"n":%d}`, i))
		h := Link(prev, c)
		out = append(out, Record{Index: uint64(i), ID: fmt.Sprintf("e%d", i), Prev: prev, Hash: h, Canonical: c})
		prev = h
	}
	return out
}

func TestVerifier(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func([]Record) []Record
		endN    func(rs []Record) (uint64, string)
		wantIdx uint64
		wantID  string
		reason  string
	}{
		{name: "ok", mutate: func(r []Record) []Record { return r }},
		{name: "empty", mutate: func([]Record) []Record { return nil }},
		{name: "canonical changed", mutate: func(r []Record) []Record { r[2].Canonical = []byte(`{"n":99}`); return r },
			wantIdx: 3, wantID: "e3", reason: "hash does not match"},
		{name: "hash changed", mutate: func(r []Record) []Record { r[1].Hash = strings.Repeat("0", 64); return r },
			wantIdx: 2, wantID: "e2", reason: "hash does not match"},
		{name: "prev changed", mutate: func(r []Record) []Record { r[3].Prev = r[1].Hash; return r },
			wantIdx: 4, wantID: "e4", reason: "prev"},
		{name: "first has prev", mutate: func(r []Record) []Record { r[0].Prev = r[1].Hash; return r },
			wantIdx: 1, wantID: "e1", reason: "prev"},
		{name: "gap", mutate: func(r []Record) []Record { return append(r[:2], r[3:]...) },
			wantIdx: 3, wantID: "", reason: "missing event"},
		{name: "repeated index", mutate: func(r []Record) []Record { return append(r[:3], r[2:]...) },
			wantIdx: 4, wantID: "e3", reason: "index 3 where 4"},
		{name: "starts at two", mutate: func(r []Record) []Record { return r[1:] },
			wantIdx: 1, reason: "missing event"},
		{name: "tail removed", mutate: func(r []Record) []Record { return r[:4] },
			endN:    func([]Record) (uint64, string) { return 5, "" },
			wantIdx: 5, reason: "missing event"},
		{name: "head differs", mutate: func(r []Record) []Record { return r },
			endN:    func(rs []Record) (uint64, string) { return 5, strings.Repeat("1", 64) },
			wantIdx: 5, wantID: "e5", reason: "session head"},
		{name: "extra events", mutate: func(r []Record) []Record { return r },
			endN:    func(rs []Record) (uint64, string) { return 4, rs[3].Hash },
			wantIdx: 5, reason: "records 4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs := tt.mutate(build(5))
			var v Verifier
			for _, r := range recs {
				v.Add(r)
			}
			var n uint64
			var head string
			if len(recs) > 0 {
				n, head = recs[len(recs)-1].Index, recs[len(recs)-1].Hash
			}
			if tt.endN != nil {
				n, head = tt.endN(build(5))
			}
			ok := v.End(n, head)
			b := v.Break()
			if tt.reason == "" {
				if !ok || b != nil {
					t.Fatalf("chain rejected: %v", b)
				}
				if v.Events() != n || v.Head() != head {
					t.Fatalf("events/head = %d/%s, want %d/%s", v.Events(), v.Head(), n, head)
				}
				return
			}
			if ok || b == nil {
				t.Fatal("broken chain accepted")
			}
			if b.Index != tt.wantIdx || b.ID != tt.wantID || !strings.Contains(b.Reason, tt.reason) {
				t.Fatalf("break = %+v, want index %d id %q reason ~%q", *b, tt.wantIdx, tt.wantID, tt.reason)
			}
			if b.Error() == "" {
				t.Fatal("empty error text")
			}
		})
	}
}

func TestVerifierStopsAtFirstBreak(t *testing.T) {
	recs := build(6)
	recs[1].Canonical = []byte("changed")
	recs[4].Canonical = []byte("changed too")
	var v Verifier
	for _, r := range recs {
		v.Add(r)
	}
	if b := v.Break(); b == nil || b.Index != 2 {
		t.Fatalf("break = %v, want index 2", b)
	}
}

func BenchmarkLink(b *testing.B) {
	c := make([]byte, 1024)
	prev := Link("", c)
	b.SetBytes(int64(len(c)))
	for b.Loop() {
		prev = Link(prev, c)
	}
}
