package mask

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func newMasker(t testing.TB, o Options) *Masker {
	t.Helper()
	if o.Key == nil {
		o.Key = []byte("test-key")
	}
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

const ghp = "ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z5A"

func TestTokensConsistent(t *testing.T) {
	a := newMasker(t, Options{Key: []byte("k1")})
	b := newMasker(t, Options{Key: []byte("k1")})
	c := newMasker(t, Options{Key: []byte("k2")})
	in := "first " + ghp + " then again " + ghp
	oa, fa := a.Mask(in)
	ob, _ := b.Mask(in)
	oc, _ := c.Mask(in)
	if oa != ob {
		t.Errorf("same key, different output:\n%s\n%s", oa, ob)
	}
	if oa == oc {
		t.Error("different keys gave the same tokens")
	}
	if len(fa) != 2 || fa[0].Token != fa[1].Token || !strings.HasPrefix(fa[0].Token, "[MASKED:github-pat:") {
		t.Fatalf("findings %+v", fa)
	}
	if strings.Contains(oa, ghp) {
		t.Fatal("secret left in output")
	}
	if again, fs := a.Mask(oa); again != oa || len(fs) != 0 {
		t.Fatalf("masking masked text changed it: %s (%v)", again, fs)
	}
}

func TestCustomRules(t *testing.T) {
	m := newMasker(t, Options{Custom: []RuleSpec{{ID: "acme-key", Regexp: `acme_(?P<secret>[a-z0-9]{12})`, Keywords: []string{"acme_"}, Entropy: 2}}})
	out, fs := m.Mask("key acme_k3j4h5g6f7d8 end")
	if len(fs) != 1 || fs[0].Rule != "acme-key" || fs[0].Secret != "k3j4h5g6f7d8" || !strings.HasPrefix(out, "key acme_[MASKED:acme-key:") {
		t.Fatalf("got %q %+v", out, fs)
	}
	if _, fs := m.Mask("acme_aaaaaaaaaaaa"); len(fs) != 0 {
		t.Fatalf("entropy gate let through %+v", fs)
	}
}

func TestBadCustomRules(t *testing.T) {
	tests := []struct {
		name string
		spec RuleSpec
		want string
	}{
		{"bad id", RuleSpec{ID: "Bad ID", Regexp: "x+"}, `"Bad ID": id must be`},
		{"bad regexp", RuleSpec{ID: "r1", Regexp: "(unclosed"}, `"r1": regexp:`},
		{"empty match", RuleSpec{ID: "r2", Regexp: "a*"}, `"r2": regexp "a*" matches the empty string`},
		{"upper keyword", RuleSpec{ID: "r3", Regexp: "abc", Keywords: []string{"ABC"}}, `"r3": keyword "ABC" is not lowercase`},
		{"entropy", RuleSpec{ID: "r4", Regexp: "abc", Entropy: 9}, `"r4": entropy 9`},
		{"duplicate", RuleSpec{ID: "github-pat", Regexp: "abc"}, `"github-pat": duplicate id`},
		{"no regexp", RuleSpec{ID: "r5"}, `"r5": no regexp`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(Options{Custom: []RuleSpec{tt.spec}})
			if !errors.Is(err, ErrInvalidRule) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want ErrInvalidRule containing %q", err, tt.want)
			}
		})
	}
}

func TestBuiltinCount(t *testing.T) {
	if n := len(Builtin()); n < 60 {
		t.Fatalf("%d built-in rules, want at least 60", n)
	}
}

func TestMaskHeaders(t *testing.T) {
	m := newMasker(t, Options{})
	h := map[string][]string{
		"Authorization": {"Bearer abc.def.ghi-not-a-known-format"},
		"X-Api-Key":     {"plain-unknown-key-123"},
		"Accept":        {"*/*"},
		"X-Debug":       {"using " + ghp},
	}
	out, fs := m.MaskHeaders(h)
	if v := out["Authorization"][0]; !strings.HasPrefix(v, "Bearer [MASKED:keyed-secret:") {
		t.Errorf("Authorization = %q", v)
	}
	if v := out["X-Api-Key"][0]; !isToken(v) {
		t.Errorf("X-Api-Key = %q", v)
	}
	if out["Accept"][0] != "*/*" || strings.Contains(out["X-Debug"][0], ghp) {
		t.Errorf("headers %v", out)
	}
	if h["X-Api-Key"][0] != "plain-unknown-key-123" {
		t.Error("input headers changed")
	}
	if len(fs) != 3 {
		t.Errorf("%d findings, want 3", len(fs))
	}
}

func TestMaskURLAndForm(t *testing.T) {
	m := newMasker(t, Options{})
	u, fs := m.MaskURL("/api/items?access_token=zq8Xv2Lk9Pm4Wn7R&page=2&x=" + ghp)
	if strings.Contains(u, "zq8Xv2Lk9Pm4Wn7R") || strings.Contains(u, ghp) || !strings.Contains(u, "page=2") || len(fs) != 2 {
		t.Fatalf("url %q %v", u, fs)
	}
	f, fs := m.MaskForm("user=bob&password=Tr0ub4dor%263&remember=on")
	if strings.Contains(f, "Tr0ub4dor") || !strings.HasPrefix(f, "user=bob&password=[MASKED:keyed-secret:") || !strings.HasSuffix(f, "&remember=on") || len(fs) != 1 {
		t.Fatalf("form %q %v", f, fs)
	}
	u, _ = m.MaskURL("https://hooks.slack.com/services/T0AAAAAAA/B0BBBBBBBBB/abcdefghijklmnopqrstuvwx")
	if strings.Contains(u, "abcdefghijklmnopqrstuvwx") {
		t.Fatalf("slack webhook url %q", u)
	}
}

func TestMaskJSON(t *testing.T) {
	m := newMasker(t, Options{})
	enc := base64.StdEncoding.EncodeToString([]byte("export TOKEN=" + ghp + "\n"))
	in := `{"z":1,"a":{"password":"hunter2hunter2","token_type":"bearer","note":"` + ghp + `"},"blob":"` + enc + `","n":[1.50,true,null]}`
	out, fs := m.MaskJSON([]byte(in))
	s := string(out)
	for _, bad := range []string{"hunter2hunter2", ghp, enc} {
		if strings.Contains(s, bad) {
			t.Errorf("output holds %q: %s", bad, s)
		}
	}
	if !strings.HasPrefix(s, `{"z":1,"a":{"password":"[MASKED:keyed-secret:`) || !strings.Contains(s, `"token_type":"bearer"`) ||
		!strings.Contains(s, `"blob":"`+DecodedPrefix+`export TOKEN=[MASKED:github-pat:`) || !strings.HasSuffix(s, `"n":[1.50,true,null]}`) {
		t.Errorf("output %s", s)
	}
	if !json.Valid(out) || len(fs) != 3 {
		t.Errorf("valid %v, %d findings", json.Valid(out), len(fs))
	}
	clean := []byte(`{ "a" : [1, 2] }`)
	if out, fs := m.MaskJSON(clean); string(out) != string(clean) || fs != nil {
		t.Errorf("clean JSON rewritten: %s", out)
	}
}

func TestMaskKubernetesSecret(t *testing.T) {
	m := newMasker(t, Options{})
	in := `{"kind":"SecretList","items":[{"apiVersion":"v1","kind":"Secret","metadata":{"name":"db"},"data":{"user":"YWRtaW4=","pw":"aHVudGVyMg=="},"stringData":{"x":"y"}}]}`
	out, fs := m.MaskJSON([]byte(in))
	s := string(out)
	if strings.Contains(s, "YWRtaW4=") || strings.Contains(s, "aHVudGVyMg==") || strings.Contains(s, `"x":"y"`) || !strings.Contains(s, `"name":"db"`) {
		t.Fatalf("secret not masked: %s", s)
	}
	if ids := RuleIDs(fs); len(ids) != 1 || ids[0] != K8sSecretRule || len(fs) != 3 {
		t.Fatalf("findings %v", fs)
	}
}

func TestMaskSSEAndSQL(t *testing.T) {
	m := newMasker(t, Options{})
	in := "event: message\ndata: {\"delta\":\"here: " + ghp + "\"}\n\ndata: plain " + ghp + "\r\n\n"
	out, fs := m.MaskSSE(in)
	if strings.Contains(out, ghp) || len(fs) != 2 || !strings.HasPrefix(out, "event: message\ndata: {\"delta\":\"here: [MASKED:") || !strings.HasSuffix(out, "]\r\n\n") {
		t.Fatalf("sse %q", out)
	}
	q, fs := m.MaskSQL("ALTER ROLE app WITH LOGIN PASSWORD 'S3cr3t-P4ss'; SELECT 1")
	if strings.Contains(q, "S3cr3t-P4ss") || !strings.HasSuffix(q, "; SELECT 1") || len(fs) != 1 || fs[0].Rule != "sql-password" {
		t.Fatalf("sql %q %v", q, fs)
	}
}

func TestPII(t *testing.T) {
	off := newMasker(t, Options{})
	on := newMasker(t, Options{PII: true})
	in := "mail alice@example.org card 4111 1111 1111 1111 id 4111111111111112"
	if out, _ := off.Mask(in); out != in {
		t.Fatalf("PII masked without PII: %s", out)
	}
	out, fs := on.Mask(in)
	if strings.Contains(out, "alice@example.org") || strings.Contains(out, "4111 1111 1111 1111") || !strings.HasSuffix(out, "4111111111111112") {
		t.Fatalf("PII: %s %v", out, fs)
	}
}

func TestJWTValidation(t *testing.T) {
	m := newMasker(t, Options{})
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256"}`))
	p := base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"agent-7","n":12345}`))
	if _, fs := m.Mask("t=" + h + "." + p + ".c2lnbmF0dXJlLXZhbHVl"); len(fs) != 1 || fs[0].Rule != "jwt" {
		t.Fatalf("jwt not found: %v", fs)
	}
	nh := base64.RawURLEncoding.EncodeToString([]byte(`{"typ":"x","foo":1}`))
	if _, fs := m.Mask("x " + nh + "." + p + ".c2ln"); len(fs) != 0 {
		t.Fatalf("header without alg accepted: %v", fs)
	}
}
