package policy

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/policy/v1alpha1"
)

// benchRules is a realistic mix of 100 Kubernetes, HTTP, SQL and LLM rules;
// only the last one matches the benchmark request, so every rule runs.
func benchRules() []v1alpha1.Rule {
	var rules []v1alpha1.Rule
	for i := 0; len(rules) < 99; i++ {
		var m string
		switch i % 5 {
		case 0:
			m = fmt.Sprintf(`request.k8s.verb in ["delete", "deletecollection"] && request.k8s.resource == "res%d"`, i)
		case 1:
			m = fmt.Sprintf(`request.http.host == "svc%d.internal" && request.http.method != "GET"`, i)
		case 2:
			m = fmt.Sprintf(`request.sql.command in ["DROP", "TRUNCATE"] && request.sql.database == "db%d"`, i)
		case 3:
			m = fmt.Sprintf(`request.http.path.startsWith("/admin/%d/") && "dev%d" in identity.groups`, i, i)
		case 4:
			m = fmt.Sprintf(`has(request.llm.model) && request.llm.model == "model-%d"`, i)
		}
		action := []v1alpha1.Action{v1alpha1.ActionDeny, v1alpha1.ActionAllow, v1alpha1.ActionRequireApproval}[i%3]
		rules = append(rules, rule(fmt.Sprintf("rule-%d", i), m, action))
	}
	return append(rules, rule("secrets", `request.k8s.resource == "secrets" && request.k8s.verb == "get" && identity.namespace == "agents"`, v1alpha1.ActionDeny))
}

// BenchmarkDecide evaluates 100 rules per request and reports the p99 of
// single decisions and the decisions per second next to ns/op.
func BenchmarkDecide(b *testing.B) {
	s := mustCompile(b, pol("bench", v1alpha1.Selector{Namespaces: []string{"agents"}}, benchRules()...))
	p := s.For(agentID)
	req := k8sReq("get", "secrets", "")
	req.HTTP.Headers = map[string]string{"authorization": "Bearer x", "user-agent": "kubectl"}
	if d := p.Decide(req); d.Rule != "secrets" || d.Err != nil {
		b.Fatalf("Decide = %+v", d)
	}
	samples := make([]time.Duration, 0, min(b.N, 1<<20))
	b.ReportAllocs()
	b.ResetTimer()
	start, n := time.Now(), 0
	for i := 0; b.Loop(); i++ {
		n++
		t0 := time.Now()
		p.Decide(req)
		if len(samples) < cap(samples) {
			samples = append(samples, time.Since(t0))
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "decisions/s")
	if len(samples) > 0 {
		slices.Sort(samples)
		b.ReportMetric(float64(samples[len(samples)*99/100].Nanoseconds()), "p99-ns")
	}
}

// BenchmarkFor measures selecting the policies of a session.
func BenchmarkFor(b *testing.B) {
	ps := make([]v1alpha1.SessionPolicy, 20)
	for i := range ps {
		ps[i] = pol(fmt.Sprintf("p%02d", i), v1alpha1.Selector{Namespaces: []string{fmt.Sprintf("ns%d", i%4), "agents"}}, benchRules()[:5]...)
	}
	s := mustCompile(b, ps...)
	b.ReportAllocs()
	for b.Loop() {
		s.For(agentID)
	}
}
