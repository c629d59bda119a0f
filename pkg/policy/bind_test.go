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
