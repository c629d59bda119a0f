package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the policy file parser: it must never
// panic, and what it accepts must compile or fail with an error, and
// survive a bundle round trip.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("---\n---\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("apiVersion: chaperone.dev/v1alpha1\nkind: SessionPolicy\nmetadata: {name: p}\nspec: {rules: [{name: a, match: 'request.k8s.verb == \"x\"', action: Deny}]}\n"))
	f.Add([]byte(`{"apiVersion":"chaperone.dev/v1alpha1","kind":"SessionPolicy","metadata":{"name":"p","labels":{"a":"b"}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ps, err := Parse(data)
		if err != nil {
			return
		}
		s, err := Compile(ps)
		if err != nil {
			return
		}
		b, err := s.Marshal()
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		s2, err := Unmarshal(b)
		if err != nil {
			t.Fatalf("Unmarshal of Marshal: %v", err)
		}
		if s2.Hash() != s.Hash() {
			t.Fatalf("hash changed in round trip")
		}
		s2.For(agentID).Decide(k8sReq("get", "pods", ""))
	})
}

// FuzzUnmarshal feeds arbitrary bytes to the bundle decoder.
func FuzzUnmarshal(f *testing.F) {
	ps, err := LoadFile(filepath.Join("testdata", "agents.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	s, err := Compile(ps)
	if err != nil {
		f.Fatal(err)
	}
	b, err := s.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"version":1,"hash":"","policies":[]}`))
	f.Add([]byte(`{"version":1,"hash":"x","policies":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Unmarshal(data)
		if err != nil {
			return
		}
		s.For(agentID).Decide(sqlReq("drop table x"))
	})
}

// TestParseAliasBomb checks that a file of nested aliases is refused or
// parsed quickly rather than expanded.
func TestParseAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("apiVersion: chaperone.dev/v1alpha1\nkind: SessionPolicy\nmetadata:\n  name: p\n  labels:\n")
	b.WriteString("    a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 30; i++ {
		fmt.Fprintf(&b, "    a%d: &a%d [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d]\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	if _, err := Parse([]byte(b.String())); err == nil {
		t.Fatal("Parse accepted an alias bomb")
	} else {
		t.Log(err)
	}
}
