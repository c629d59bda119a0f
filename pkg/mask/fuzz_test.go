package mask

import (
	"encoding/json"
	"strings"
	"testing"
)

// fuzzMasker is shared: building one per input would dominate the run.
var fuzzMasker = func() *Masker {
	m, err := New(Options{Key: []byte("fuzz"), PII: true})
	if err != nil {
		panic(err)
	}
	return m
}()

// notInSegments reports whether sec occurs in out outside the tokens.
func notInSegments(out, sec string) bool {
	for _, seg := range tokenRE.Split(out, -1) {
		if strings.Contains(seg, sec) {
			return false
		}
	}
	return true
}

func FuzzMask(f *testing.F) {
	f.Add("export GITHUB_TOKEN=" + ghp)
	f.Add("AKIAABCDEFGHIJKLMNOPAKIAQRSTUVWXYZ234567")
	f.Add("password = \"Zx9!qR7#tLm2\" and postgres://u:pw123456@h/db")
	f.Add("[MASKED:github-pat:0123abcd] " + ghp)
	f.Add("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx9v3\n-----END RSA PRIVATE KEY-----")
	f.Add("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig")
	f.Fuzz(func(t *testing.T, in string) {
		out, fs := fuzzMasker.Mask(in)
		for _, x := range fs {
			if len(x.Secret) >= minExpand && !notInSegments(out, x.Secret) {
				t.Fatalf("output holds finding %q of %s:\n%q", x.Secret, x.Rule, out)
			}
		}
		if again, fs2 := fuzzMasker.Mask(out); again != out || len(fs2) != 0 {
			t.Fatalf("not idempotent:\n%q\n%q\n%v", out, again, fs2)
		}
		// Later passes look only near what the previous one changed;
		// looking everywhere must give the same.
		full := in
		for range maxPasses {
			o, fs, _ := fuzzMasker.maskPass(full, nil, false)
			if len(fs) == 0 {
				break
			}
			full = o
		}
		if full != out {
			t.Fatalf("local passes differ from full passes:\n%q\n%q", out, full)
		}
	})
}

func FuzzJSON(f *testing.F) {
	f.Add([]byte(`{"password":"hunter2hunter2","a":[1,"` + ghp + `"]}`))
	f.Add([]byte(`{"kind":"Secret","data":{"k":"dmFsdWU="}}`))
	f.Add([]byte(`["Z2hwX2FCM2RFNWZHN2hKOWtMMW1OM3BRNXJTN3RVOXZXMXhZM3o1QQ=="]`))
	f.Add([]byte(`not json ` + ghp))
	f.Fuzz(func(t *testing.T, in []byte) {
		out, fs := fuzzMasker.MaskJSON(in)
		if json.Valid(in) && !json.Valid(out) {
			t.Fatalf("valid JSON became invalid:\n%s\n%s", in, out)
		}
		if len(fs) == 0 && string(out) != string(in) {
			t.Fatalf("nothing found but output changed")
		}
		again, _ := fuzzMasker.MaskJSON(out)
		if json.Valid(in) && string(again) != string(out) {
			t.Fatalf("not idempotent:\n%s\n%s", out, again)
		}
	})
}
