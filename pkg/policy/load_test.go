package policy

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chaperone-dev/chaperone/pkg/policy/v1alpha1"
)

func TestLoadFileExample(t *testing.T) {
	ps, err := LoadFile(filepath.Join("testdata", "agents.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2 || ps[0].Name != "agents-baseline" || ps[1].Name != "egress" {
		t.Fatalf("loaded %d policies", len(ps))
	}
	// Defaults are applied on load.
	if ps[1].Spec.DefaultAction != v1alpha1.ActionAllow || ps[1].Spec.OnRecorderFailure != v1alpha1.FailClosed {
		t.Fatalf("defaults not applied: %+v", ps[1].Spec)
	}
	s := mustCompile(t, ps...)
	p := s.For(agentID)
	tests := []struct {
		req    *Request
		rule   string
		action v1alpha1.Action
	}{
		{k8sReq("list", "secrets", ""), "no-secrets", v1alpha1.ActionDeny},
		{k8sReq("create", "pods", "exec"), "exec-needs-approval", v1alpha1.ActionRequireApproval},
		{sqlReq("truncate audit"), "destructive-sql", v1alpha1.ActionRequireApproval},
		{&Request{LLM: LLM{Provider: "anthropic", Model: "claude"}}, "llm-metadata-only", v1alpha1.ActionAllow},
		{&Request{Protocol: "tls", Destination: Destination{Host: "proxy.golang.org", Port: 443}}, "package-registries", v1alpha1.ActionAllow},
		{httpReq("POST", "https://pastebin.com/api", nil), "no-pastebins", v1alpha1.ActionDeny},
		{httpReq("GET", "https://example.com/", nil), "", v1alpha1.ActionAllow},
	}
	for _, tt := range tests {
		d := p.Decide(tt.req)
		if d.Rule != tt.rule || d.Action != tt.action || d.Err != nil {
			t.Errorf("Decide(%+v) = %+v, want %s %s", tt.req, d, tt.rule, tt.action)
		}
	}
	d := p.Decide(k8sReq("create", "pods", "exec"))
	if d.Approval.MinApprovals != 2 || d.Approval.Timeout.Minutes() != 10 {
		t.Errorf("approval = %+v", d.Approval)
	}
	// Without the label only the baseline policy applies.
	id := agentID
	id.Labels = nil
	if got := s.For(id).Policies(); len(got) != 1 || got[0] != "agents-baseline" {
		t.Errorf("Policies without label = %v", got)
	}
}

func TestLoadFileErrors(t *testing.T) {
	tests := []struct {
		file string
		is   error
		want []string
	}{
		{"unknown-field.yaml", ErrSyntax, []string{"unknown-field.yaml", "line 9", `unknown field "spec.rules[0].acton"`}},
		{"bad-enum.yaml", v1alpha1.ErrInvalid, []string{`policy "bad-enum" rule "r1"`, "spec.rules[0].action", `"Block"`}},
		{"duplicate-rule.yaml", v1alpha1.ErrInvalid, []string{`policy "dup" rule "same"`, "duplicate of spec.rules[0]"}},
		{"missing-name.yaml", v1alpha1.ErrInvalid, []string{`policy "nameless-rule"`, "spec.rules[0].name: required"}},
		{"does-not-exist.yaml", os.ErrNotExist, []string{"does-not-exist.yaml"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			_, err := LoadFile(filepath.Join("testdata", tt.file))
			if err == nil {
				t.Fatal("LoadFile succeeded")
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}

	// A rule that parses but does not compile is caught by Compile.
	ps, err := LoadFile(filepath.Join("testdata", "bad-cel.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Compile(ps); err == nil || !strings.Contains(err.Error(), `policy "bad-cel" rule "unknown-field"`) {
		t.Fatalf("Compile = %v", err)
	}
}

func TestParseStrict(t *testing.T) {
	const head = "apiVersion: chaperone.dev/v1alpha1\nkind: SessionPolicy\nmetadata:\n  name: p\n"
	tests := []struct {
		name string
		doc  string
		want string // "" means it parses
	}{
		{"minimal", head, ""},
		{"json", `{"apiVersion":"chaperone.dev/v1alpha1","kind":"SessionPolicy","metadata":{"name":"p"},"spec":{}}`, ""},
		{"empty documents", "---\n---\n" + head + "---\n", ""},
		{"unknown top field", head + "specs: {}\n", `line 5: unknown field "specs"`},
		{"unknown metadata field", "apiVersion: chaperone.dev/v1alpha1\nkind: SessionPolicy\nmetadata:\n  name: p\n  nam: q\n", `line 5: unknown field "metadata.nam"`},
		{"unknown selector field", head + "spec:\n  selector:\n    namespace: [a]\n", `line 7: unknown field "spec.selector.namespace"`},
		{"unknown approval field", head + "spec:\n  rules:\n  - name: a\n    match: 'true'\n    action: RequireApproval\n    approval:\n      approvers: [x]\n", `line 11: unknown field "spec.rules[0].approval.approvers"`},
		{"duplicate field", head + "spec:\n  defaultAction: Deny\n  defaultAction: Allow\n", `line 7: duplicate field "spec.defaultAction" (first at line 6)`},
		{"duplicate label", head + "spec:\n  selector:\n    matchLabels: {a: b, a: c}\n", "duplicate"},
		{"wrong type", head + "spec:\n  rules: {}\n", "cannot unmarshal"},
		{"wrong int", head + "spec:\n  rules:\n  - name: a\n    match: 'true'\n    action: RequireApproval\n    approval: {approverGroups: [x], minApprovals: many}\n", "minApprovals"},
		{"bad duration", head + "spec:\n  rules:\n  - name: a\n    match: 'true'\n    action: RequireApproval\n    approval: {approverGroups: [x], timeout: soon}\n", "soon"},
		{"zero min approvals", head + "spec:\n  rules:\n  - name: a\n    match: 'true'\n    action: RequireApproval\n    approval: {approverGroups: [x], minApprovals: -1}\n", "minApprovals: must be at least 1"},
		{"approval without groups", head + "spec:\n  rules:\n  - name: a\n    match: 'true'\n    action: RequireApproval\n", "approverGroups: required"},
		{"approval on allow", head + "spec:\n  rules:\n  - name: a\n    match: 'true'\n    action: Allow\n    approval: {approverGroups: [x]}\n", "applies only to action RequireApproval"},
		{"bad default action", head + "spec:\n  defaultAction: RequireApproval\n", "spec.defaultAction: must be Allow or Deny"},
		{"bad record", head + "spec:\n  defaultRecord: Some\n", "spec.defaultRecord"},
		{"bad failure mode", head + "spec:\n  onRecorderFailure: Maybe\n", "spec.onRecorderFailure"},
		{"bad rule record", head + "spec:\n  rules:\n  - {name: a, match: 'true', action: Allow, record: All}\n", "spec.rules[0].record"},
		{"missing match", head + "spec:\n  rules:\n  - {name: a, action: Allow}\n", "spec.rules[0].match: required"},
		{"missing action", head + "spec:\n  rules:\n  - {name: a, match: 'true'}\n", "spec.rules[0].action: required"},
		{"wrong kind", "apiVersion: chaperone.dev/v1alpha1\nkind: Policy\nmetadata:\n  name: p\n", `kind: must be "SessionPolicy"`},
		{"wrong version", "apiVersion: chaperone.dev/v1\nkind: SessionPolicy\nmetadata:\n  name: p\n", "apiVersion"},
		{"missing policy name", "apiVersion: chaperone.dev/v1alpha1\nkind: SessionPolicy\n", "metadata.name: required"},
		{"bad service account", head + "spec:\n  selector:\n    serviceAccounts: [a/b/c]\n", "spec.selector.serviceAccounts[0]"},
		{"yaml syntax", head + "spec: [\n", "document 1"},
		{"second document", head + "---\n" + head + "  labels: {x: y}\n  bogus: 1\n", `document 2: line 11: unknown field "metadata.bogus"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps, err := Parse([]byte(tt.doc))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if len(ps) != 1 {
					t.Fatalf("got %d policies", len(ps))
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", ps)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestBundleRoundTrip(t *testing.T) {
	ps, err := LoadFile(filepath.Join("testdata", "agents.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ps[0].ManagedFields = nil
	ps[0].Annotations = map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{}"}
	ps[0].ResourceVersion = "42"
	s := mustCompile(t, ps...)
	b, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "last-applied") {
		t.Errorf("annotations travel in the bundle")
	}
	s2, err := Unmarshal(b)
	if err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	if s2.Hash() != s.Hash() || s2.Len() != 2 || s2.Policies()[0].ResourceVersion != "42" {
		t.Fatalf("round trip: hash %s vs %s, %d policies", s2.Hash(), s.Hash(), s2.Len())
	}
	if d := s2.For(agentID).Decide(k8sReq("get", "secrets", "")); d.Rule != "no-secrets" {
		t.Fatalf("decoded set decides %+v", d)
	}
	// Metadata does not change the hash; the spec does.
	ps[0].ResourceVersion = "43"
	if mustCompile(t, ps...).Hash() != s.Hash() {
		t.Errorf("hash depends on metadata")
	}
	ps[0].Spec.Rules[0].Reason = "changed"
	if mustCompile(t, ps...).Hash() == s.Hash() {
		t.Errorf("hash ignores the spec")
	}

	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	tamper := func(f func(map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	bad := map[string][]byte{
		"hash":    tamper(func(m map[string]any) { m["hash"] = strings.Repeat("0", 64) }),
		"version": tamper(func(m map[string]any) { m["version"] = 2 }),
		"unknown": tamper(func(m map[string]any) { m["extra"] = true }),
		"policy": tamper(func(m map[string]any) {
			m["policies"].([]any)[0].(map[string]any)["spec"].(map[string]any)["defaultAction"] = "Deny"
		}),
		"trailing": append(append([]byte{}, b...), []byte(" {}")...),
		"empty":    nil,
	}
	for name, data := range bad {
		if _, err := Unmarshal(data); err == nil {
			t.Errorf("Unmarshal accepted tampered bundle %q", name)
		}
	}
	if empty, err := mustCompile(t).Marshal(); err != nil {
		t.Fatal(err)
	} else if s, err := Unmarshal(empty); err != nil || s.Len() != 0 {
		t.Fatalf("empty bundle: %v", err)
	}
}

func TestHelpers(t *testing.T) {
	for stmt, want := range map[string]string{
		"select 1":                       "SELECT",
		"  \n\tInsert into t values (1)": "INSERT",
		"-- comment\nDROP TABLE x":       "DROP",
		"/* a */ /* b */(select 1)":      "SELECT",
		"WITH x AS (SELECT 1) SELECT *":  "WITH",
		"":                               "",
		"/* unterminated":                "",
		"-- only a comment":              "",
		";;vacuum":                       "VACUUM",
	} {
		if got := SQLCommand(stmt); got != want {
			t.Errorf("SQLCommand(%q) = %q, want %q", stmt, got, want)
		}
	}
	h := HeadersFrom(map[string][]string{"X-Api-Key": {"a", "b"}, "Accept": {"*/*"}, "Empty": nil})
	if len(h) != 2 || h["x-api-key"] != "a" || h["accept"] != "*/*" {
		t.Errorf("HeadersFrom = %v", h)
	}
	q := QueryFrom("a=1&a=2&b=&c=%zz")
	if q["a"] != "1" || q["b"] != "" || len(q) != 2 {
		t.Errorf("QueryFrom = %v", q)
	}
}

// TestDocsExample keeps the example in docs/policy.md loadable.
func TestDocsExample(t *testing.T) {
	md, err := os.ReadFile(filepath.Join("..", "..", "docs", "policy.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(md), "```yaml\n")
	if !ok {
		t.Fatal("no yaml block in docs/policy.md")
	}
	doc, _, _ := strings.Cut(rest, "```")
	ps, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	p := mustCompile(t, ps...).For(Identity{Namespace: "agents", ServiceAccount: "coder"})
	if d := p.Decide(httpReq("GET", "https://example.com/", map[string]string{"x-debug": "1"})); d.Rule != "debug-header" || d.Err != nil {
		t.Fatalf("debug header: %+v", d)
	}
	if d := p.Decide(httpReq("GET", "https://example.com/", nil)); d.Rule != "" || d.Err != nil {
		t.Fatalf("no header: %+v", d)
	}
}
