package policy

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chaperone-dev/chaperone/pkg/policy/v1alpha1"
)

// pol builds a policy named name with the given rules.
func pol(name string, sel v1alpha1.Selector, rules ...v1alpha1.Rule) v1alpha1.SessionPolicy {
	return v1alpha1.SessionPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.Kind},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1alpha1.SessionPolicySpec{Selector: sel, Rules: rules},
	}
}

func rule(name, match string, action v1alpha1.Action) v1alpha1.Rule {
	r := v1alpha1.Rule{Name: name, Match: match, Action: action, Reason: name + " reason"}
	if action == v1alpha1.ActionRequireApproval {
		r.Approval = &v1alpha1.Approval{ApproverGroups: []string{"approvers"}}
	}
	return r
}

func mustCompile(t testing.TB, ps ...v1alpha1.SessionPolicy) *Set {
	t.Helper()
	s, err := Compile(ps)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return s
}

var agentID = Identity{
	User:           "alice@example.com",
	Groups:         []string{"dev", "agents-admins"},
	ServiceAccount: "system:serviceaccount:agents:coder",
	Namespace:      "agents",
	Pod:            "coder-0",
	Labels:         map[string]string{"app": "coder", "chaperone.dev/agent": "copilot"},
}

func TestSelectors(t *testing.T) {
	tests := []struct {
		name string
		sel  v1alpha1.Selector
		id   Identity
		want bool
	}{
		{"empty selects all", v1alpha1.Selector{}, Identity{}, true},
		{"namespace", v1alpha1.Selector{Namespaces: []string{"x", "agents"}}, agentID, true},
		{"other namespace", v1alpha1.Selector{Namespaces: []string{"x"}}, agentID, false},
		{"labels all match", v1alpha1.Selector{MatchLabels: map[string]string{"app": "coder", "chaperone.dev/agent": "copilot"}}, agentID, true},
		{"label value differs", v1alpha1.Selector{MatchLabels: map[string]string{"app": "other"}}, agentID, false},
		{"label missing", v1alpha1.Selector{MatchLabels: map[string]string{"team": "a"}}, agentID, false},
		{"sa bare name", v1alpha1.Selector{ServiceAccounts: []string{"coder"}}, agentID, true},
		{"sa ns/name", v1alpha1.Selector{ServiceAccounts: []string{"agents/coder"}}, agentID, true},
		{"sa other ns", v1alpha1.Selector{ServiceAccounts: []string{"prod/coder"}}, agentID, false},
		{"sa plain identity", v1alpha1.Selector{ServiceAccounts: []string{"agents/coder"}}, Identity{ServiceAccount: "coder", Namespace: "agents"}, true},
		{"sa none", v1alpha1.Selector{ServiceAccounts: []string{"coder"}}, Identity{Namespace: "agents"}, false},
		{"all parts", v1alpha1.Selector{Namespaces: []string{"agents"}, MatchLabels: map[string]string{"app": "coder"}, ServiceAccounts: []string{"coder"}}, agentID, true},
		{"one part fails", v1alpha1.Selector{Namespaces: []string{"agents"}, MatchLabels: map[string]string{"app": "coder"}, ServiceAccounts: []string{"other"}}, agentID, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustCompile(t, pol("p", tt.sel, rule("deny-all", "true", v1alpha1.ActionDeny)))
			p := s.For(tt.id)
			got := len(p.Policies()) == 1
			if got != tt.want {
				t.Fatalf("selected = %v, want %v", got, tt.want)
			}
			if d := p.Decide(&Request{}); (d.Action == v1alpha1.ActionDeny) != tt.want {
				t.Fatalf("Decide = %+v", d)
			}
		})
	}
}

func k8sReq(verb, resource, sub string) *Request {
	return &Request{
		Protocol:    "http2",
		Destination: Destination{Host: "kubernetes.default.svc", IP: "10.96.0.1", Port: 443},
		HTTP:        HTTP{Method: "GET", Host: "kubernetes.default.svc", Path: "/api/v1/namespaces/agents/" + resource},
		K8s:         K8s{Verb: verb, APIVersion: "v1", Resource: resource, Subresource: sub, Namespace: "agents", Name: "x"},
	}
}

func sqlReq(stmt string) *Request {
	return &Request{
		Protocol:    "postgres",
		Destination: Destination{Host: "db", IP: "10.0.0.5", Port: 5432},
		SQL:         SQL{Statement: stmt, Database: "app", User: "agent"},
	}
}

func httpReq(method, url string, headers map[string]string) *Request {
	host, path, _ := strings.Cut(strings.TrimPrefix(url, "https://"), "/")
	path, query, _ := strings.Cut("/"+path, "?")
	return &Request{
		Protocol:    "http1",
		Destination: Destination{Host: host, IP: "192.0.2.1", Port: 443},
		HTTP:        HTTP{Method: method, URL: url, Path: path, Host: host, Headers: headers, Query: QueryFrom(query)},
	}
}

func TestDecide(t *testing.T) {
	approval := v1alpha1.Rule{
		Name: "exec", Match: `request.k8s.subresource == "exec"`, Action: v1alpha1.ActionRequireApproval,
		Reason: "exec needs a human", Record: v1alpha1.RecordFull, MaskingRuleSets: []string{"tokens"},
		Approval: &v1alpha1.Approval{ApproverGroups: []string{"oncall"}, MinApprovals: 2, Timeout: &metav1.Duration{Duration: 90e9}},
	}
	main := pol("a-main", v1alpha1.Selector{Namespaces: []string{"agents"}},
		rule("no-secrets", `request.k8s.resource == "secrets"`, v1alpha1.ActionDeny),
		approval,
		v1alpha1.Rule{Name: "drop", Match: `request.sql.command == "DROP"`, Action: v1alpha1.ActionDeny, Reason: "no drops"},
		v1alpha1.Rule{Name: "reads", Match: `request.sql.command == "SELECT"`, Action: v1alpha1.ActionAllow, Record: v1alpha1.RecordMetadataOnly},
		rule("llm", `has(request.llm.model) && request.llm.model.startsWith("gpt-")`, v1alpha1.ActionAllow),
		rule("pastebin", `request.http.host.endsWith("pastebin.com")`, v1alpha1.ActionDeny),
		rule("pastebin-again", `request.http.host == "pastebin.com"`, v1alpha1.ActionAllow),
		rule("admins", `"agents-admins" in identity.groups && request.http.headers[?"x-admin"].orValue("") == "1"`, v1alpha1.ActionAllow),
		rule("delete", `request.k8s.verb == "delete" && identity.serviceAccount == "coder" && identity.labels.app == "coder"`, v1alpha1.ActionRequireApproval),
		rule("query", `"force" in request.http.query && request.http.query.force == "true"`, v1alpha1.ActionDeny),
		rule("port", `request.destination.port == 25`, v1alpha1.ActionDeny),
	)
	main.Spec.DefaultRecord = v1alpha1.RecordMetadataOnly
	other := pol("b-other", v1alpha1.Selector{},
		rule("tcp-deny", `request.protocol == "tcp" && !has(request.http)`, v1alpha1.ActionDeny),
		rule("no-secrets", `true`, v1alpha1.ActionAllow), // same name, other policy: fine
	)
	s := mustCompile(t, other, main) // order in the slice does not matter
	p := s.For(agentID)
	if got := p.Policies(); len(got) != 2 || got[0] != "a-main" || got[1] != "b-other" {
		t.Fatalf("Policies = %v", got)
	}

	tests := []struct {
		name   string
		req    *Request
		policy string
		rule   string
		action v1alpha1.Action
		record v1alpha1.RecordLevel
	}{
		{"deny secrets", k8sReq("get", "secrets", ""), "a-main", "no-secrets", v1alpha1.ActionDeny, v1alpha1.RecordMetadataOnly},
		{"approval for exec", k8sReq("create", "pods", "exec"), "a-main", "exec", v1alpha1.ActionRequireApproval, v1alpha1.RecordFull},
		{"first match wins: secrets exec", k8sReq("create", "secrets", "exec"), "a-main", "no-secrets", v1alpha1.ActionDeny, v1alpha1.RecordMetadataOnly},
		{"sql drop", sqlReq("drop table users"), "a-main", "drop", v1alpha1.ActionDeny, v1alpha1.RecordMetadataOnly},
		{"sql select", sqlReq("  /* hint */ SELECT 1"), "a-main", "reads", v1alpha1.ActionAllow, v1alpha1.RecordMetadataOnly},
		{"sql command given", &Request{SQL: SQL{Statement: "whatever", Command: "DROP"}}, "a-main", "drop", v1alpha1.ActionDeny, v1alpha1.RecordMetadataOnly},
		{"llm", &Request{Protocol: "http1", LLM: LLM{Provider: "openai", Model: "gpt-5"}}, "a-main", "llm", v1alpha1.ActionAllow, v1alpha1.RecordMetadataOnly},
		{"http deny", httpReq("POST", "https://api.pastebin.com/x", nil), "a-main", "pastebin", v1alpha1.ActionDeny, v1alpha1.RecordMetadataOnly},
		{"http allow by identity and header", httpReq("GET", "https://example.com/", map[string]string{"x-admin": "1"}), "a-main", "admins", v1alpha1.ActionAllow, v1alpha1.RecordMetadataOnly},
		{"identity fields", k8sReq("delete", "pods", ""), "a-main", "delete", v1alpha1.ActionRequireApproval, v1alpha1.RecordMetadataOnly},
		{"query map", httpReq("GET", "https://example.com/a?force=true&x=1", map[string]string{"x-admin": "0"}), "a-main", "query", v1alpha1.ActionDeny, v1alpha1.RecordMetadataOnly},
		{"int field", &Request{Protocol: "tcp", Destination: Destination{IP: "10.0.0.1", Port: 25}}, "a-main", "port", v1alpha1.ActionDeny, v1alpha1.RecordMetadataOnly},
		{"second policy", &Request{Protocol: "tcp", Destination: Destination{IP: "10.0.0.1", Port: 22}}, "b-other", "tcp-deny", v1alpha1.ActionDeny, v1alpha1.RecordFull},
		{"second policy last rule", k8sReq("get", "pods", ""), "b-other", "no-secrets", v1alpha1.ActionAllow, v1alpha1.RecordFull},
		{"nil request", nil, "b-other", "no-secrets", v1alpha1.ActionAllow, v1alpha1.RecordFull},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Decide(tt.req)
			if d.Policy != tt.policy || d.Rule != tt.rule || d.Action != tt.action || d.Record != tt.record {
				t.Fatalf("Decide = %s/%s %s %s, want %s/%s %s %s (err %v)",
					d.Policy, d.Rule, d.Action, d.Record, tt.policy, tt.rule, tt.action, tt.record, d.Err)
			}
			if d.Err != nil {
				t.Fatalf("unexpected evaluation error: %v", d.Err)
			}
		})
	}

	d := p.Decide(k8sReq("create", "pods", "exec"))
	if d.Reason != "exec needs a human" || d.Approval == nil || d.Approval.MinApprovals != 2 ||
		d.Approval.Timeout != 90e9 || d.Approval.ApproverGroups[0] != "oncall" || d.MaskingRuleSets[0] != "tokens" {
		t.Fatalf("exec decision = %+v approval %+v", d, d.Approval)
	}
	d = p.Decide(k8sReq("delete", "pods", ""))
	if d.Approval.MinApprovals != 1 || d.Approval.Timeout != v1alpha1.DefaultApprovalTimeout.Duration {
		t.Fatalf("defaulted approval = %+v", d.Approval)
	}
}

func TestDefaults(t *testing.T) {
	allowP := pol("a", v1alpha1.Selector{}, rule("never", "false", v1alpha1.ActionDeny))
	denyP := pol("b", v1alpha1.Selector{Namespaces: []string{"agents"}})
	denyP.Spec.DefaultAction = v1alpha1.ActionDeny
	denyP.Spec.DefaultRecord = v1alpha1.RecordNone
	openP := pol("c", v1alpha1.Selector{Namespaces: []string{"open"}})
	openP.Spec.OnRecorderFailure = v1alpha1.FailOpen
	openP.Spec.DefaultRecord = v1alpha1.RecordNone

	s := mustCompile(t, allowP, denyP, openP)
	tests := []struct {
		name    string
		id      Identity
		policy  string
		action  v1alpha1.Action
		record  v1alpha1.RecordLevel
		failure v1alpha1.FailureMode
	}{
		{"default allow", Identity{Namespace: "x"}, "a", v1alpha1.ActionAllow, v1alpha1.RecordFull, v1alpha1.FailClosed},
		{"deny wins over allow", Identity{Namespace: "agents"}, "b", v1alpha1.ActionDeny, v1alpha1.RecordFull, v1alpha1.FailClosed},
		{"fail closed wins", Identity{Namespace: "open"}, "a", v1alpha1.ActionAllow, v1alpha1.RecordFull, v1alpha1.FailClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := s.For(tt.id)
			d := p.Decide(&Request{})
			if d.Policy != tt.policy || d.Rule != "" || d.Action != tt.action || d.Record != tt.record || p.OnRecorderFailure() != tt.failure {
				t.Fatalf("got %+v %s", d, p.OnRecorderFailure())
			}
		})
	}

	only := mustCompile(t, openP).For(Identity{Namespace: "open"})
	if only.OnRecorderFailure() != v1alpha1.FailOpen || only.Decide(nil).Record != v1alpha1.RecordNone {
		t.Fatalf("single FailOpen policy: %s %+v", only.OnRecorderFailure(), only.Decide(nil))
	}
	none := mustCompile(t).For(agentID)
	if d := none.Decide(nil); d.Action != v1alpha1.ActionAllow || d.Record != v1alpha1.RecordFull || d.Policy != "" ||
		none.OnRecorderFailure() != v1alpha1.FailClosed {
		t.Fatalf("no policy: %+v", d)
	}
}

// TestAbsentSections checks that sections a request does not have read as
// empty, that has() tells them apart, and that no rule errors.
func TestAbsentSections(t *testing.T) {
	exprs := map[string]bool{ // expression → value on a raw TCP request
		`request.k8s.verb == "delete"`:             false,
		`request.http.headers.size() == 0`:         true,
		`has(request.k8s)`:                         false,
		`has(request.k8s.verb)`:                    false,
		`has(request.destination)`:                 true,
		`has(request.destination.port)`:            true,
		`has(request.http.host)`:                   false,
		`request.sql.command == ""`:                true,
		`request.llm.model.startsWith("gpt")`:      false,
		`"x" in request.http.query`:                false,
		`has(request.http.headers.authorization)`:  false,
		`identity.groups.exists(g, g == "dev")`:    true,
		`request.http == request.http`:             true,
		`request.destination.ip.startsWith("10.")`: true,
		`size(identity.labels) == 2`:               true,
	}
	rules := make([]v1alpha1.Rule, 0, len(exprs))
	i := 0
	for e := range exprs {
		rules = append(rules, rule("r"+string(rune('a'+i)), e, v1alpha1.ActionDeny))
		i++
	}
	req := &Request{Protocol: "tcp", Destination: Destination{IP: "10.1.2.3", Port: 5000}}
	for _, r := range rules {
		t.Run(r.Match, func(t *testing.T) {
			p := mustCompile(t, pol("p", v1alpha1.Selector{}, r)).For(agentID)
			d := p.Decide(req)
			if d.Err != nil {
				t.Fatalf("evaluation error: %v", d.Err)
			}
			if got := d.Rule != ""; got != exprs[r.Match] {
				t.Fatalf("%s = %v, want %v", r.Match, got, exprs[r.Match])
			}
		})
	}
}

func TestEvaluationErrorsFailClosed(t *testing.T) {
	s := mustCompile(t, pol("p", v1alpha1.Selector{},
		rule("allow-by-header", `request.http.headers["x-ok"] == "1"`, v1alpha1.ActionAllow),
		rule("deny-by-header", `request.http.headers["x-bad"] == "1"`, v1alpha1.ActionDeny),
	))
	d := s.For(Identity{}).Decide(httpReq("GET", "https://example.com/", nil))
	if d.Action != v1alpha1.ActionDeny || d.Rule != "deny-by-header" || d.Err == nil ||
		!strings.Contains(d.Err.Error(), `rule "allow-by-header"`) {
		t.Fatalf("got %+v", d)
	}
	d = s.For(Identity{}).Decide(httpReq("GET", "https://example.com/", map[string]string{"x-ok": "1"}))
	if d.Action != v1alpha1.ActionAllow || d.Err != nil {
		t.Fatalf("got %+v", d)
	}
}

func TestCostLimit(t *testing.T) {
	s := mustCompile(t, pol("p", v1alpha1.Selector{},
		rule("expensive", `request.http.path.split("").all(a, request.http.path.split("").all(b, a != "x"))`, v1alpha1.ActionDeny),
	))
	req := httpReq("GET", "https://example.com/"+strings.Repeat("a", 2000), nil)
	d := s.For(Identity{}).Decide(req)
	if d.Action != v1alpha1.ActionDeny || d.Err == nil || !strings.Contains(d.Err.Error(), "cost") {
		t.Fatalf("got %+v", d)
	}
	if d := s.For(Identity{}).Decide(httpReq("GET", "https://example.com/abc", nil)); d.Err != nil {
		t.Fatalf("cheap request: %v", d.Err)
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name  string
		match string
		want  string
	}{
		{"syntax", `request.k8s.verb ==`, "Syntax error"},
		{"not bool", `request.k8s.verb`, "must be a bool expression"},
		{"int not bool", `request.destination.port + 1`, "must be a bool expression"},
		{"unknown field", `request.k8s.verbb == "delete"`, "undefined field 'verbb'"},
		{"unknown section", `request.grpc.method == "x"`, "undefined field 'grpc'"},
		{"unknown variable", `req.k8s.verb == "delete"`, "undeclared reference to 'req'"},
		{"type mismatch", `request.destination.port == "443"`, "no matching overload"},
		{"identity field", `identity.team == "x"`, "undefined field 'team'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile([]v1alpha1.SessionPolicy{pol("my-policy", v1alpha1.Selector{},
				rule("ok", "true", v1alpha1.ActionAllow),
				rule("broken", tt.match, v1alpha1.ActionDeny))})
			if err == nil {
				t.Fatal("Compile succeeded")
			}
			msg := err.Error()
			for _, want := range []string{`policy "my-policy"`, `rule "broken"`, "spec.rules[1].match", tt.want} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not contain %q", msg, want)
				}
			}
			if !errors.Is(err, v1alpha1.ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid")
			}
			if CheckExpression(tt.match) == nil {
				t.Errorf("CheckExpression accepted %q", tt.match)
			}
		})
	}

	_, err := Compile([]v1alpha1.SessionPolicy{pol("twice", v1alpha1.Selector{}), pol("twice", v1alpha1.Selector{})})
	if err == nil || !strings.Contains(err.Error(), "defined twice") {
		t.Fatalf("duplicate policy names: %v", err)
	}
}

func TestCostTrackingOnlyWhereNeeded(t *testing.T) {
	tests := []struct {
		expr    string
		tracked bool
	}{
		{`request.k8s.verb in ["delete", "deletecollection"] && request.k8s.resource == "pods"`, false},
		{`request.http.path.startsWith("/admin/") && "dev" in identity.groups`, false},
		{`request.http.url.matches("^https://[a-z]+\\.example\\.com/")`, false},
		{`request.http.headers.exists(k, k.startsWith("x-"))`, true},
		{`request.sql.statement.split(" ").all(w, w != "DROP")`, true},
	}
	for _, tt := range tests {
		c, err := compileMatchTracked(tt.expr)
		if err != nil {
			t.Fatalf("%s: %v", tt.expr, err)
		}
		if tracked := c.tracked; tracked != tt.tracked {
			t.Errorf("%s: tracked = %v, want %v", tt.expr, tracked, tt.tracked)
		}
	}
}

func TestDecideConcurrent(t *testing.T) {
	p := mustCompile(t, pol("p", v1alpha1.Selector{},
		rule("secrets", `request.k8s.resource == "secrets"`, v1alpha1.ActionDeny),
		rule("sql", `request.sql.command == "DROP"`, v1alpha1.ActionDeny),
	)).For(agentID)
	done := make(chan error)
	for g := range 4 {
		go func() {
			for i := range 500 {
				req, want := k8sReq("get", "secrets", ""), "secrets"
				if (i+g)%2 == 0 {
					req, want = sqlReq("select 1"), ""
				}
				if d := p.Decide(req); d.Rule != want {
					done <- fmt.Errorf("goroutine %d: Decide = %+v, want rule %q", g, d, want)
					return
				}
			}
			done <- nil
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
