package kubepolicy

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chaperone-dev/chaperone/pkg/policy"
	"github.com/chaperone-dev/chaperone/pkg/policy/v1alpha1"
)

// maxConditionMessage bounds a condition message; the CRD allows 32768
// bytes.
const maxConditionMessage = 8 << 10

// distributed is what was last distributed from the cluster: the set's
// hash and the generation of each policy in it.
type distributed struct {
	hash        string
	generations map[string]int64
}

// plan is what one pass decides: the set to publish (nil: keep the last
// good one) and the status each object should have.
type plan struct {
	// publish says the set compiled and is to be published: policies is
	// then the whole list, possibly empty (which withdraws the policy).
	publish  bool
	policies []v1alpha1.SessionPolicy
	// hash of the set to publish.
	hash string
	// status by policy name.
	status map[string]v1alpha1.SessionPolicyStatus
	// broken are the names of the policies that do not compile.
	broken []string
}

// makePlan compiles each policy on its own, to tell which ones are broken,
// then the whole list. When everything compiles the list is published and
// every policy is Ready; otherwise nothing is published, the broken ones
// get CompileError, and the others are Ready only if their current
// generation is in last, the set that stays distributed.
func makePlan(policies []v1alpha1.SessionPolicy, bad map[string]error, last distributed) plan {
	p := plan{status: make(map[string]v1alpha1.SessionPolicyStatus, len(policies)+len(bad))}
	errs := make(map[string]error, len(bad))
	for name, err := range bad {
		errs[name] = err
	}
	for i := range policies {
		if _, err := policy.Compile(policies[i : i+1]); err != nil {
			errs[policies[i].Name] = err
		}
	}
	if len(errs) == 0 {
		set, err := policy.Compile(policies)
		if err == nil {
			p.publish, p.policies = true, policies
			if len(policies) > 0 {
				p.hash = set.Hash()
			}
			for i := range policies {
				p.status[policies[i].Name] = readyStatus(policies[i].Status, policies[i].Generation, p.hash)
			}
			return p
		}
		// Each compiles alone but not together: blame them all.
		for i := range policies {
			errs[policies[i].Name] = err
		}
	}
	for name := range errs {
		p.broken = append(p.broken, name)
	}
	slices.Sort(p.broken)
	for i := range policies {
		pol := &policies[i]
		if err, ok := errs[pol.Name]; ok {
			p.status[pol.Name] = condition(pol.Status, pol.Generation, metav1.ConditionFalse, v1alpha1.ReasonCompileError,
				"not distributed: "+err.Error(), "")
			continue
		}
		if gen, ok := last.generations[pol.Name]; ok && gen == pol.Generation && last.hash != "" {
			p.status[pol.Name] = readyStatus(pol.Status, pol.Generation, last.hash)
			continue
		}
		p.status[pol.Name] = condition(pol.Status, pol.Generation, metav1.ConditionFalse, v1alpha1.ReasonNotDistributed,
			fmt.Sprintf("compiles, but not distributed while %s does not compile; the last good policy set %s stays",
				strings.Join(quoteAll(p.broken), ", "), shortHash(last.hash)), "")
	}
	// Objects that could not even be read as a SessionPolicy.
	for name, err := range bad {
		p.status[name] = condition(v1alpha1.SessionPolicyStatus{}, 0, metav1.ConditionFalse, v1alpha1.ReasonCompileError,
			"not distributed: "+err.Error(), "")
	}
	return p
}

func readyStatus(old v1alpha1.SessionPolicyStatus, gen int64, hash string) v1alpha1.SessionPolicyStatus {
	msg := "distributed in policy set " + shortHash(hash)
	return condition(old, gen, metav1.ConditionTrue, v1alpha1.ReasonDistributed, msg, hash)
}

// condition returns old with its Ready condition set; the transition time
// changes only when the status does.
func condition(old v1alpha1.SessionPolicyStatus, gen int64, st metav1.ConditionStatus, reason, msg, hash string) v1alpha1.SessionPolicyStatus {
	s := *old.DeepCopy()
	if len(msg) > maxConditionMessage {
		msg = strings.ToValidUTF8(msg[:maxConditionMessage], "") + " …(truncated)"
	}
	meta.SetStatusCondition(&s.Conditions, metav1.Condition{
		Type: v1alpha1.ConditionReady, Status: st, Reason: reason, Message: msg, ObservedGeneration: gen,
	})
	s.SetHash = hash
	return s
}

func shortHash(h string) string {
	if h == "" {
		return "(none)"
	}
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

func quoteAll(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = fmt.Sprintf("%q", n)
	}
	return out
}
