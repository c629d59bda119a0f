package kubepolicy

import (
	"errors"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chaperone-dev/chaperone/pkg/policy"
	"github.com/chaperone-dev/chaperone/pkg/policy/v1alpha1"
)

func pol(name string, gen int64, match string) v1alpha1.SessionPolicy {
	return v1alpha1.SessionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name, Generation: gen},
		Spec: v1alpha1.SessionPolicySpec{Rules: []v1alpha1.Rule{
			{Name: "r", Match: match, Action: v1alpha1.ActionDeny},
		}},
	}
}

func ready(t *testing.T, s v1alpha1.SessionPolicyStatus) *metav1.Condition {
	t.Helper()
	c := meta.FindStatusCondition(s.Conditions, v1alpha1.ConditionReady)
	if c == nil {
		t.Fatalf("no Ready condition in %+v", s)
	}
	return c
}

func TestPlanAllGood(t *testing.T) {
	ps := []v1alpha1.SessionPolicy{pol("a", 1, "true"), pol("b", 3, "request.k8s.verb == 'delete'")}
	pl := makePlan(ps, nil, distributed{})
	set, err := policy.Compile(ps)
	if err != nil {
		t.Fatal(err)
	}
	if !pl.publish || pl.hash != set.Hash() || len(pl.broken) != 0 {
		t.Fatalf("plan %+v", pl)
	}
	for _, p := range ps {
		st := pl.status[p.Name]
		c := ready(t, st)
		if c.Status != metav1.ConditionTrue || c.Reason != v1alpha1.ReasonDistributed || c.ObservedGeneration != p.Generation ||
			st.SetHash != set.Hash() || !strings.Contains(c.Message, set.Hash()[:12]) {
			t.Errorf("%s: %+v %+v", p.Name, c, st)
		}
	}
	// Unchanged input, status already written: the same status, so no write.
	ps[0].Status = pl.status["a"]
	again := makePlan(ps, nil, distributed{})
	if !ready(t, again.status["a"]).LastTransitionTime.Equal(&ready(t, pl.status["a"]).LastTransitionTime) {
		t.Error("transition time moved without a transition")
	}
}

func TestPlanEmptyWithdraws(t *testing.T) {
	pl := makePlan(nil, nil, distributed{hash: "old"})
	if !pl.publish || pl.hash != "" || len(pl.policies) != 0 {
		t.Fatalf("plan %+v", pl)
	}
}

func TestPlanBrokenKeepsLastGood(t *testing.T) {
	good := pol("a", 1, "true")
	edited := pol("b", 2, "true") // was at generation 1 in the last set
	fresh := pol("c", 1, "true")  // new since
	broken := pol("d", 1, "request.k8s.verb ==")
	last := distributed{hash: strings.Repeat("ab", 32), generations: map[string]int64{"a": 1, "b": 1}}
	pl := makePlan([]v1alpha1.SessionPolicy{good, edited, fresh, broken}, map[string]error{"e": errors.New("not a SessionPolicy")}, last)
	if pl.publish {
		t.Fatal("a set with a broken policy is published")
	}
	if strings.Join(pl.broken, ",") != "d,e" {
		t.Fatalf("broken %v", pl.broken)
	}
	if c := ready(t, pl.status["a"]); c.Status != metav1.ConditionTrue || pl.status["a"].SetHash != last.hash {
		t.Errorf("a: %+v", c)
	}
	for _, n := range []string{"b", "c"} {
		c := ready(t, pl.status[n])
		if c.Status != metav1.ConditionFalse || c.Reason != v1alpha1.ReasonNotDistributed || !strings.Contains(c.Message, `"d"`) ||
			pl.status[n].SetHash != "" {
			t.Errorf("%s: %+v", n, c)
		}
	}
	c := ready(t, pl.status["d"])
	if c.Status != metav1.ConditionFalse || c.Reason != v1alpha1.ReasonCompileError ||
		!strings.Contains(c.Message, `policy "d" rule "r"`) || !strings.Contains(c.Message, "spec.rules[0].match") {
		t.Errorf("d: %+v", c)
	}
	if c := ready(t, pl.status["e"]); c.Reason != v1alpha1.ReasonCompileError {
		t.Errorf("e: %+v", c)
	}
}

func TestConditionMessageBounded(t *testing.T) {
	st := condition(v1alpha1.SessionPolicyStatus{}, 1, metav1.ConditionFalse, v1alpha1.ReasonCompileError, strings.Repeat("é", maxConditionMessage), "")
	c := ready(t, st)
	if len(c.Message) > maxConditionMessage+32 || !strings.HasSuffix(c.Message, "(truncated)") || !strings.HasPrefix(c.Message, "é") {
		t.Fatalf("message of %d bytes", len(c.Message))
	}
}
