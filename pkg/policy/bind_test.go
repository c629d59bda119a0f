package policy

import (
	"testing"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/interpreter"

	"github.com/chaperone-dev/chaperone/pkg/policy/v1alpha1"
)

// TestIdentityBinding checks that the identity values For binds once per
// session (identityVals) behave in every rule as the values the identity
// view converts on demand: each expression yields the same through Decide
// and through an activation without bound values.
func TestIdentityBinding(t *testing.T) {
	exprs := []string{
		`identity.user == "alice@example.com"`,
		`"dev" in identity.groups`,
		`"ops" in identity.groups`,
		`identity.groups == ["dev", "agents-admins"]`,
		`identity.groups.exists(g, g.startsWith("agents-"))`,
		`size(identity.groups) == 2`,
		`identity.groups[1] == "agents-admins"`,
		`identity.labels.app == "coder"`,
		`identity.labels["chaperone.dev/agent"] == "copilot"`,
		`"app" in identity.labels`,
		`has(identity.labels.app)`,
		`has(identity.labels.missing)`,
		`identity.labels == {"app": "coder", "chaperone.dev/agent": "copilot"}`,
		`identity.labels[?"missing"].orValue("none") == "none"`,
		`identity.labels.all(k, k.size() > 2)`,
		`size(identity.labels) == 2`,
		`identity.serviceAccount == "coder" && identity.namespace == "agents" && identity.pod == "coder-0"`,
		`has(identity.groups) && has(identity.labels) && has(identity.user)`,
	}
	ids := map[string]Identity{"agent": agentID, "empty": {}}
	req := k8sReq("get", "pods", "")
	for name, id := range ids {
		for _, expr := range exprs {
			m, err := compileMatchTracked(expr)
			if err != nil {
				t.Fatalf("%s: %v", expr, err)
			}
			out, _, err := m.prg.Eval(interpreter.Activation(&activation{req: req, id: &id}))
			want := out == types.True
			p := mustCompile(t, pol("p", v1alpha1.Selector{}, rule("r", expr, v1alpha1.ActionDeny))).For(id)
			d := p.Decide(req)
			if got := d.Rule == "r"; got != (want || err != nil) || (d.Err != nil) != (err != nil) {
				t.Errorf("%s, %s identity: Decide = %+v; unbound evaluation = %v, %v", expr, name, d, out, err)
			}
		}
	}
}

// TestDecideAllocs checks the allocations of one decision over the
// benchmark's 100 rules: none when the matching rule is decided by its
// guards or reads only plain fields and the identity, and two (the header
// value) when it reads a request header.
func TestDecideAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's sync.Pool drops items")
	}
	want := map[string]float64{"100rules-guards": 0, "100rules-cel": 0, "100rules-headers": 2}
	for _, bc := range benchLast {
		p := mustCompile(t, pol("bench", v1alpha1.Selector{Namespaces: []string{"agents"}},
			benchRules(rule("secrets", bc.match, v1alpha1.ActionDeny))...)).For(agentID)
		req := k8sReq("get", "secrets", "")
		req.HTTP.Headers = map[string]string{"user-agent": "kubectl/v1.37.2"}
		if d := p.Decide(req); d.Rule != "secrets" || d.Err != nil {
			t.Fatalf("%s: Decide = %+v", bc.name, d)
		}
		if got := testing.AllocsPerRun(1000, func() { p.Decide(req) }); got > want[bc.name] {
			t.Errorf("%s: %v allocations per decision, want at most %v", bc.name, got, want[bc.name])
		}
	}
}

// decideExprs are rules FuzzDecide checks Decide's shortcuts on: guards
// alone, guards then CEL, literals the request may equal, maps.
var decideExprs = []string{
	`request.k8s.verb in ["delete", "deletecollection"] && request.k8s.resource == "secrets"`,
	`request.k8s.verb == "get" && request.http.path.startsWith("/api/")`,
	`request.sql.command in ["DROP", "TRUNCATE"] && identity.namespace == "agents"`,
	`request.http.method == "POST" && "dev" in identity.groups`,
	`request.k8s.resource == request.k8s.verb`,
	`request.http.headers["x-a"] == "1" && request.http.method != "GET"`,
	`"x-a" in request.http.headers && request.http.query.size() == 0`,
	`request.http.headers[?"x-a"].orValue("") == request.k8s.verb`,
	`has(request.http.query.q) || request.k8s.name == "secrets"`,
	`request.sql.statement.contains(request.k8s.verb) && identity.labels.app == "coder"`,
}

// FuzzDecide checks Decide against CEL alone on arbitrary requests: each
// rule matches (or fails) through Decide exactly when its expression,
// evaluated with nothing bound in advance and no guards, is true (or
// fails).
func FuzzDecide(f *testing.F) {
	f.Add("delete", "secrets", "/api/v1", "POST", "1", "DROP TABLE x")
	f.Add("get", "get", "/admin", "GET", "get", "select 1")
	f.Add("", "", "", "", "", "")
	type compiled struct {
		p *Policy
		m compiledMatch
	}
	var rules []compiled
	for _, e := range decideExprs {
		m, err := compileMatchTracked(e)
		if err != nil {
			f.Fatalf("%s: %v", e, err)
		}
		p := mustCompile(f, pol("p", v1alpha1.Selector{}, rule("r", e, v1alpha1.ActionDeny))).For(agentID)
		rules = append(rules, compiled{p, m})
	}
	f.Fuzz(func(t *testing.T, verb, resource, path, method, header, stmt string) {
		req := &Request{
			HTTP: HTTP{Method: method, Path: path, Headers: map[string]string{"x-a": header}},
			K8s:  K8s{Verb: verb, Resource: resource, Name: header},
			SQL:  SQL{Statement: stmt},
		}
		if header == "" {
			req.HTTP.Headers = nil
		}
		for i, r := range rules {
			out, _, err := r.m.prg.Eval(interpreter.Activation(&activation{req: req, id: &agentID}))
			d := r.p.Decide(req)
			if (d.Rule == "r") != (out == types.True || err != nil) || (d.Err != nil) != (err != nil) {
				t.Fatalf("%s on %+v: Decide = %+v; CEL = %v, %v", decideExprs[i], req, d, out, err)
			}
		}
	})
}
