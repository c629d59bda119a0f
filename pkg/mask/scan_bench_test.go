package mask

import (
	"strings"
	"testing"
)

// BenchmarkKeywordScan scans 1 MB of plain log text with the built-in
// keywords: the cost every clean body pays.
func BenchmarkKeywordScan(b *testing.B) {
	m, err := New(Options{Key: []byte("bench")})
	if err != nil {
		b.Fatal(err)
	}
	var sb strings.Builder
	for sb.Len() < 1<<20 {
		sb.WriteString("The build ran 42 tests in 3.1s; see https://ci.internal/job/1234 for the log of step compile.\n")
	}
	s := sb.String()
	b.SetBytes(int64(len(s)))
	n := 0
	for b.Loop() {
		m.km.scan(s, func(int, int, int) { n++ })
	}
}

// BenchmarkMaskLog masks plain log text in 64 KiB pieces, as maskbench's
// clean run does.
func BenchmarkMaskLog(b *testing.B) {
	m, err := New(Options{Key: []byte("bench")})
	if err != nil {
		b.Fatal(err)
	}
	var sb strings.Builder
	for sb.Len() < 1<<20 {
		sb.WriteString("The build ran 42 tests in 3.1s; see https://ci.internal/job/1234 for the log of step compile.\n")
	}
	s := sb.String()
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		for i := 0; i < len(s); i += 64 << 10 {
			m.Mask(s[i:min(i+64<<10, len(s))])
		}
	}
}
