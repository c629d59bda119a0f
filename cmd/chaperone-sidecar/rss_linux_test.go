package main

import (
	"io"
	"os"
	"testing"
)

const smapsSample = `00400000-0097a000 r-xp 00000000 00:1f 123 /bin/chaperone-sidecar
Size:               5608 kB
Rss:                5340 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me
00f70000-00fe9000 rw-p 00b70000 00:1f 123 /bin/chaperone-sidecar
Rss:                 420 kB
Anonymous:            96 kB
7f8cf43fd000-7f8cf47bd000 rw-p 00000000 00:00 0
Rss:                2256 kB
Anonymous:          2256 kB
`

func TestParseSmaps(t *testing.T) {
	got := parseSmaps([]byte(smapsSample))
	want := []mapping{
		{start: 0x400000, end: 0x97a000, perms: "r-xp", path: "/bin/chaperone-sidecar", rss: 5340 << 10},
		{start: 0xf70000, end: 0xfe9000, perms: "rw-p", path: "/bin/chaperone-sidecar", rss: 420 << 10, anon: 96 << 10},
		{start: 0x7f8cf43fd000, end: 0x7f8cf47bd000, perms: "rw-p", rss: 2256 << 10, anon: 2256 << 10},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d mappings, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("mapping %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}

// TestTrimExecutable trims this test binary's own pages and checks that
// the process still runs code and reads constant data afterwards.
func TestTrimExecutable(t *testing.T) {
	n, err := trimExecutable()
	if err != nil {
		t.Fatal(err)
	}
	if n <= 0 {
		t.Errorf("trimmed %d bytes, want some", n)
	}
	if _, err := parseProxyFlags([]string{"--session", "bad.session"}, io.Discard, os.Getenv); err == nil {
		t.Error("flag parsing after the trim accepted a bad session")
	}
}

func FuzzParseSmaps(f *testing.F) {
	f.Add([]byte(smapsSample))
	f.Add([]byte("x-y z\nRss: 1 kB\n-\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// Any input parses without panicking; header lines start entries.
		for _, m := range parseSmaps(data) {
			if m.perms == "" {
				t.Fatalf("mapping without permissions: %+v", m)
			}
		}
	})
}
