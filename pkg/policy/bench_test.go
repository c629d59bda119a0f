package policy

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/policy/v1alpha1"
)

// benchRules is a realistic mix of 99 Kubernetes, HTTP, SQL and LLM rules
// followed by last; only last matches the benchmark request, so every rule
// runs.
func benchRules(last v1alpha1.Rule) []v1alpha1.Rule {
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
	return append(rules, last)
}

// benchLast are the matching last rules of the benchmarks: one made of
// comparisons only (decided in Go, see guard) and ones CEL must run.
var benchLast = []struct {
	name, match string
}{
	{"100rules-guards", `request.k8s.resource == "secrets" && request.k8s.verb == "get" && identity.namespace == "agents"`},
	{"100rules-cel", `request.k8s.resource == "secrets" && request.k8s.verb in ["get", "list"] && "agents-admins" in identity.groups`},
	{"100rules-headers", `request.k8s.resource == "secrets" && request.http.headers["user-agent"].startsWith("kubectl")`},
}

// BenchmarkDecide evaluates 100 rules per request. Next to ns/op and the
// allocations it reports decisions per second and the p50 and p99 latency
// of single decisions (see latencies).
func BenchmarkDecide(b *testing.B) {
	for _, bc := range benchLast {
		b.Run(bc.name, func(b *testing.B) {
			s := mustCompile(b, pol("bench", v1alpha1.Selector{Namespaces: []string{"agents"}},
				benchRules(rule("secrets", bc.match, v1alpha1.ActionDeny))...))
			p := s.For(agentID)
			req := k8sReq("get", "secrets", "")
			req.HTTP.Headers = map[string]string{"authorization": "Bearer x", "user-agent": "kubectl/v1.37.2"}
			if d := p.Decide(req); d.Rule != "secrets" || d.Err != nil {
				b.Fatalf("Decide = %+v", d)
			}
			b.ReportAllocs()
			start := time.Now()
			for b.Loop() {
				p.Decide(req)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "decisions/s")
			reportLatencies(b, func() { p.Decide(req) })
		})
	}
}

// Latency sampling: after warm-up calls, each of latencySamples calls is
// timed on its own, so the percentiles are of single calls, whatever
// b.N was.
const (
	latencyWarmup  = 10_000
	latencySamples = 200_000
)

// reportLatencies times single calls of f, outside the benchmark's timer,
// and reports their p50 and p99 in nanoseconds. On a shared machine the
// tail includes the moments the scheduler gave the CPU to someone else;
// run with -count to see the spread.
func reportLatencies(b *testing.B, f func()) {
	b.Helper()
	b.StopTimer()
	for range latencyWarmup {
		f()
	}
	lat := make([]time.Duration, latencySamples)
	for i := range lat {
		t0 := time.Now()
		f()
		lat[i] = time.Since(t0)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
}

// BenchmarkFor measures selecting the policies of a session.
func BenchmarkFor(b *testing.B) {
	ps := make([]v1alpha1.SessionPolicy, 20)
	for i := range ps {
		ps[i] = pol(fmt.Sprintf("p%02d", i), v1alpha1.Selector{Namespaces: []string{fmt.Sprintf("ns%d", i%4), "agents"}}, benchRules(rule("last", `true`, v1alpha1.ActionAllow))[:5]...)
	}
	s := mustCompile(b, ps...)
	b.ReportAllocs()
	for b.Loop() {
		s.For(agentID)
	}
}
