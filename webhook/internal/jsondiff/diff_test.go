package jsondiff

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gomodules.xyz/jsonpatch/v2"
	"sigs.k8s.io/yaml"
)

// canonical sorts ops and marshals them, so that patches from Patch and
// from CreatePatch (whose order follows map iteration) compare.
func canonical(t testing.TB, ops []jsonpatch.Operation) string {
	t.Helper()
	out := make([]string, 0, len(ops))
	for i := range ops {
		b, err := json.Marshal(&ops[i])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	slices.SortFunc(out, cmp.Compare)
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// agree checks Patch against CreatePatch on a and b: the same operations,
// or both refuse. Where CreatePatch fails only because a number it decodes
// does not fit a float64, Patch may succeed (it does not decode shared
// parts).
func agree(t *testing.T, a, b []byte) {
	t.Helper()
	want, wantErr := jsonpatch.CreatePatch(a, b)
	got, err := Patch(a, b)
	switch {
	case wantErr != nil && err != nil:
		return
	case wantErr != nil:
		var x, y any
		if json.Valid(a) && json.Valid(b) && (json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil) {
			return // a number out of float64's range
		}
		t.Fatalf("CreatePatch fails (%v), Patch does not: %v", wantErr, got)
	case err != nil:
		t.Fatalf("Patch fails (%v), CreatePatch does not: %v", err, want)
	}
	if g, w := canonical(t, got), canonical(t, want); g != w {
		t.Fatalf("Patch(%s, %s)\n got: %s\nwant: %s", a, b, g, w)
	}
	for _, ops := range [][]jsonpatch.Operation{got, want} {
		m, err := Marshal(ops)
		if err != nil {
			t.Fatal(err)
		}
		if w, _ := json.Marshal(ops); !bytes.Equal(m, w) {
			t.Fatalf("Marshal(Patch(%s, %s))\n got: %s\nwant: %s", a, b, m, w)
		}
	}
}

var pairs = [][2]string{
	{`{}`, `{}`},
	{`{"a":1}`, `{"a":1.0}`},
	{`{"a":1}`, `{"a":2}`},
	{`{"a":"x"}`, `{"a":"\u0078"}`},
	{`{"a":"x"}`, `{"a":"y","b":[1,2]}`},
	{`{"a":[1,2,3]}`, `{"a":[1]}`},
	{`{"a":[1]}`, `{"a":[0,{"b":null},3]}`},
	{`{"a":null}`, `{"a":{}}`},
	{`{"a":null}`, `{"a":null }`},
	{`{"a/b~c":1}`, `{"a/b~c":2, "": true}`},
	{` { "a" : { "b" : [ 1 , "x" ] } } `, `{"a":{"b":[1,"y",false]}}`},
	{`{"a":1,"a":2}`, `{"a":2}`},
	{`{"a":1,"a":2}`, `{"a":1}`},
	{`{"\u0061":1}`, `{"a":1}`},
	{`{"a\u00e9":1}`, `{"aé":2}`},
	{`{"a":"\ud800"}`, `{"a":"\ufffd"}`},
	{`[1,2]`, `[2]`},
	{`1`, `"1"`},
	{`true`, `false`},
	{`{"a":1e400}`, `{"a":1e400,"b":1}`},
	{`{"a":1e400}`, `{"a":2}`},
	{`not json`, `{}`},
	{`{}`, `{"a":`},
	{`{"a":1}`, `{"a":1}x`},
	{`x`, `x`},
}

func TestPatchAgreesWithCreatePatch(t *testing.T) {
	for _, p := range pairs {
		agree(t, []byte(p[0]), []byte(p[1]))
	}
}

// TestPodPatch: the patch of an injected pod (the webhook's golden case)
// is CreatePatch's, and applying it to the original gives the result.
func TestPodPatch(t *testing.T) {
	a, b := podPair(t)
	agree(t, a, b)
	ops, err := Patch(a, b)
	if err != nil || len(ops) == 0 {
		t.Fatalf("Patch = %v, %v", ops, err)
	}
	for _, op := range ops {
		if _, ok := op.Value.(json.RawMessage); !ok && op.Operation != "remove" {
			t.Errorf("%s %s: value is a %T, not json.RawMessage (Marshal would fall back)", op.Operation, op.Path, op.Value)
		}
	}
	if _, err := Patch(a, a[:len(a)-1]); !errors.Is(err, ErrInvalid) {
		t.Fatalf("truncated document: err = %v", err)
	}
}

// podPair returns a pod and a changed copy of it.
func podPair(t testing.TB) (a, b []byte) {
	y, err := os.ReadFile(filepath.Join("..", "..", "testdata", "annotation.pod.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	a, err = yaml.YAMLToJSON(y)
	if err != nil {
		t.Fatal(err)
	}
	var pod map[string]any
	if err := json.Unmarshal(a, &pod); err != nil {
		t.Fatal(err)
	}
	meta := pod["metadata"].(map[string]any)
	meta["annotations"].(map[string]any)["chaperone.dev/requested-by"] = "alice"
	spec := pod["spec"].(map[string]any)
	spec["initContainers"] = []any{map[string]any{"name": "chaperone-sidecar", "image": "x", "restartPolicy": "Always"}}
	spec["automountServiceAccountToken"] = false
	c := spec["containers"].([]any)[0].(map[string]any)
	c["env"] = append([]any{map[string]any{"name": "SSL_CERT_FILE", "value": "/b"}}, c["env"].([]any)...)
	b, err = json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

// FuzzPatch checks Patch against CreatePatch on arbitrary pairs.
func FuzzPatch(f *testing.F) {
	for _, p := range pairs {
		f.Add([]byte(p[0]), []byte(p[1]))
	}
	a, b := podPair(f)
	f.Add(a, b)
	f.Fuzz(func(t *testing.T, a, b []byte) {
		agree(t, a, b)
	})
}

func BenchmarkPatch(b *testing.B) {
	x, y := podPair(b)
	b.Run("jsondiff", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Patch(x, y); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("gomodules", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := jsonpatch.CreatePatch(x, y); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestDeep: documents nested deeper than Patch walks itself get
// CreatePatch's operations.
func TestDeep(t *testing.T) {
	deep := func(n int, leaf string) []byte {
		return []byte(strings.Repeat(`{"a":[`, n) + leaf + strings.Repeat(`]}`, n))
	}
	for _, n := range []int{maxDepth / 2, maxDepth, 2 * maxDepth} {
		agree(t, deep(n, "1"), deep(n, "2"))
		agree(t, deep(n, "1"), deep(n+1, "1"))
	}
}

// canonicalAgrees checks appendCanonical against Marshal of the decoded
// value.
func canonicalAgrees(t *testing.T, v []byte) {
	t.Helper()
	if !json.Valid(v) {
		return
	}
	var x any
	wantErr := json.Unmarshal(v, &x)
	got, err := new(scratch).appendCanonical(nil, bytes.TrimSpace(v))
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("appendCanonical(%s): err = %v, Unmarshal: %v", v, err, wantErr)
	}
	if err != nil {
		return
	}
	want, err := json.Marshal(x)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("appendCanonical(%s)\n got: %s\nwant: %s", v, got, want)
	}
}

var canonicalSeeds = []string{
	`{"b":1,"a":[true,false,null],"a":{"z":"<&>","y":"\u2028é\ud800"}}`,
	`[0, -0, 1.50, 1e21, 1e20, 1e-7, 0.000001, 123456789012345678, 9007199254740993, -3, 1E2, 0.1]`,
	`"tab\there \"q\" \\ \u0001 \u007f"`,
	`{"\u0062":1,"a\u0000":2,"":3}`,
	`1e400`,
	`{}`, `[]`, `""`,
}

func TestCanonical(t *testing.T) {
	for _, s := range canonicalSeeds {
		canonicalAgrees(t, []byte(s))
	}
	a, b := podPair(t)
	canonicalAgrees(t, a)
	canonicalAgrees(t, b)
}

// FuzzCanonical checks appendCanonical against Marshal of the decoded
// value on arbitrary JSON.
func FuzzCanonical(f *testing.F) {
	for _, s := range canonicalSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(canonicalAgrees)
}
