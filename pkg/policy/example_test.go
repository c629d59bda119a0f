package policy_test

import (
	"fmt"
	"log"

	"github.com/chaperone-dev/chaperone/pkg/policy"
)

// This example loads the example policies, selects those of one agent and
// decides two requests: a secret read and a harmless pod list.
func Example() {
	ps, err := policy.LoadFile("testdata/agents.yaml")
	if err != nil {
		log.Fatal(err)
	}
	set, err := policy.Compile(ps)
	if err != nil {
		log.Fatal(err)
	}
	p := set.For(policy.Identity{Namespace: "agents", ServiceAccount: "coder"})
	for _, k := range []policy.K8s{
		{Verb: "get", Resource: "secrets", Namespace: "agents", Name: "db"},
		{Verb: "list", Resource: "pods", Namespace: "agents"},
	} {
		d := p.Decide(&policy.Request{Protocol: "http2", K8s: k})
		fmt.Printf("%s %s: %s (rule %q)\n", k.Verb, k.Resource, d.Action, d.Rule)
	}
	// Output:
	// get secrets: Deny (rule "no-secrets")
	// list pods: Allow (rule "")
}
