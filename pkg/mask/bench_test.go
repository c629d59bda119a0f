package mask

import (
	"testing"

	"github.com/chaperone-dev/chaperone/pkg/mask/corpus"
)

// BenchmarkMask masks a 1 MB document of corpus secrets and look-alike
// text; MB/s is per core.
func BenchmarkMask(b *testing.B) {
	m, err := New(Options{Key: []byte("bench")})
	if err != nil {
		b.Fatal(err)
	}
	text := corpus.Text(7, 1<<20)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		m.Mask(text)
	}
}

// BenchmarkMaskClean masks 1 MB of text without secrets or keywords, the
// common case.
func BenchmarkMaskClean(b *testing.B) {
	m, err := New(Options{Key: []byte("bench")})
	if err != nil {
		b.Fatal(err)
	}
	var text []byte
	for len(text) < 1<<20 {
		text = append(text, "The quick brown fox jumps over the lazy dog while the build runs tests.\n"...)
	}
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		m.MaskBytes(text)
	}
}

// BenchmarkMaskSmall masks one short corpus sample at a time, like a
// header value or a small body.
func BenchmarkMaskSmall(b *testing.B) {
	m, err := New(Options{Key: []byte("bench")})
	if err != nil {
		b.Fatal(err)
	}
	samples := corpus.Generate(3, 2)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		m.Mask(samples[i%len(samples)].Text)
		i++
	}
}
