package policy

import (
	"testing"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/interpreter"
)

// TestGuardsAgreeWithCEL checks the guards' soundness: whenever a guard
// rejects a request, the full expression is false for it; when the guards
// are exact, they pass exactly when the expression is true; and every
// stringFields reader reads what CEL reads.
func TestGuardsAgreeWithCEL(t *testing.T) {
	exprs := []string{
		`request.k8s.verb in ["delete", "deletecollection"] && request.k8s.resource == "secrets"`,
		`"get" == request.k8s.verb`,
		`request.http.path.startsWith("/admin/") && request.http.method != "GET"`,
		`has(request.llm.model) && request.llm.model == "gpt-x"`,
		`request.sql.command == "DROP" || request.sql.command == "TRUNCATE"`,
		`request.k8s.verb == "" && request.protocol == "tcp"`,
		`identity.serviceAccount == "coder" && request.destination.host == "db"`,
		`request.sql.command in ["DROP", "TRUNCATE"] && request.http.path.startsWith("/admin/") && "get" == request.k8s.verb`,
		`request.k8s.verb in [] && request.protocol == "tcp"`,
		`request.protocol == "tcp" && identity.namespace == "agents" && request.destination.port == 0`,
	}
	// wantExact says which of exprs are made of guards only.
	wantExact := []bool{true, true, false, false, false, true, true, true, true, false}
	reqs := []*Request{
		{},
		{Protocol: "tcp", Destination: Destination{Host: "db"}},
		{Protocol: "http1", HTTP: HTTP{Method: "POST", Path: "/admin/x"}},
		{Protocol: "http2", K8s: K8s{Verb: "delete", Resource: "secrets"}},
		{Protocol: "http2", K8s: K8s{Verb: "get", Resource: "pods"}},
		{Protocol: "postgres", SQL: SQL{Statement: "drop table x"}},
		{LLM: LLM{Model: "gpt-x"}},
	}
	id := Identity{ServiceAccount: "system:serviceaccount:agents:coder", Namespace: "agents"}
	for j, expr := range exprs {
		m, err := compileMatchTracked(expr)
		if err != nil {
			t.Fatal(err)
		}
		if m.exact != wantExact[j] {
			t.Errorf("%s: exact = %v, want %v", expr, m.exact, wantExact[j])
		}
		for i, req := range reqs {
			act := &activation{req: req, id: &id}
			out, _, err := m.prg.Eval(interpreter.Activation(act))
			if err != nil {
				t.Fatalf("%s on request %d: %v", expr, i, err)
			}
			pass := true
			for _, g := range m.guards {
				if !g.pass(&activation{req: req, id: &id}) {
					pass = false
					if out == types.True {
						t.Errorf("%s: a guard rejects request %d, which matches", expr, i)
					}
				}
			}
			if m.exact && types.Bool(pass) != out {
				t.Errorf("%s: exact guards say %v for request %d, CEL says %v", expr, pass, i, out)
			}
		}
	}
	req := &Request{Protocol: "p", Destination: Destination{Host: "h", IP: "i"},
		HTTP: HTTP{Method: "m", URL: "u", Path: "pa", Host: "ho"},
		K8s:  K8s{Verb: "v", APIGroup: "g", APIVersion: "av", Resource: "r", Subresource: "s", Namespace: "n", Name: "na"},
		SQL:  SQL{Statement: "select 1", Database: "d", User: "us"}, LLM: LLM{Provider: "pr", Model: "mo"}}
	full := Identity{User: "u", ServiceAccount: "system:serviceaccount:agents:coder", Namespace: "ns", Pod: "pod"}
	for path, get := range stringFields {
		m, err := compileMatchTracked(path + ` == "x"`)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		want := get(&activation{req: req, id: &full})
		m2, err := compileMatchTracked(path + ` == "` + want + `"`)
		if err != nil {
			t.Fatal(err)
		}
		out, _, err := m2.prg.Eval(interpreter.Activation(&activation{req: req, id: &full}))
		if err != nil || out != types.True {
			t.Errorf("%s: Go reads %q, CEL does not agree (%v, %v)", path, want, out, err)
		}
		if len(m.guards) != 1 {
			t.Errorf("%s: %d guards, want 1", path, len(m.guards))
		}
	}
}
