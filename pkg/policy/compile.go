package policy

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"

	"github.com/chaperone-dev/chaperone/pkg/policy/v1alpha1"
)

// Set is a compiled, immutable set of policies. It is safe for concurrent
// use.
type Set struct {
	policies []*compiledPolicy // sorted by name
	hash     string
	// lits holds the string literals of every rule as CEL values. A
	// request field equal to one of them (the verb a rule compares with)
	// is given this value instead of a newly allocated one: the common
	// case of a decision then allocates nothing. Read only.
	lits map[string]ref.Val
}

// compiledPolicy is one validated policy with its rules planned.
type compiledPolicy struct {
	src   v1alpha1.SessionPolicy
	rules []*compiledRule
	// lits are the string literals of the rules' matches.
	lits []string
}

// compiledRule is one rule ready to evaluate. Its decision is built once,
// so a match costs no allocation.
type compiledRule struct {
	prg cel.Program
	// guards are necessary conditions of the match tested before the
	// program runs (see guard).
	guards []*guard
	// exact says the guards are the whole match: when they pass, the rule
	// matches without running prg.
	exact    bool
	decision Decision
	// failClosed says an evaluation error applies the rule (Deny,
	// RequireApproval) instead of skipping it (Allow).
	failClosed bool
}

// Approval is a RequireApproval rule's approval settings, with defaults
// applied.
type Approval struct {
	// ApproverGroups are the groups whose members may approve.
	ApproverGroups []string
	// MinApprovals is how many distinct approvers must approve.
	MinApprovals int
	// Timeout is how long the request is held before it is denied.
	Timeout time.Duration
}

// Compile validates policies, compiles every rule's match expression and
// returns the set. Errors name the policy, the rule and the CEL message;
// all problems are reported, joined. The policies are copied and defaulted;
// the caller's slice is not changed.
func Compile(policies []v1alpha1.SessionPolicy) (*Set, error) {
	s := &Set{policies: make([]*compiledPolicy, 0, len(policies))}
	var errs []error
	names := make(map[string]bool, len(policies))
	for i := range policies {
		p := policies[i].DeepCopy()
		p.Default()
		if err := p.Validate(); err != nil {
			errs = append(errs, err)
			continue
		}
		if names[p.Name] {
			errs = append(errs, &v1alpha1.FieldError{Policy: p.Name, Field: "metadata.name", Msg: "defined twice"})
			continue
		}
		names[p.Name] = true
		cp, err := compilePolicy(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.policies = append(s.policies, cp)
		for _, l := range cp.lits {
			if s.lits == nil {
				s.lits = make(map[string]ref.Val)
			}
			s.lits[l] = types.String(l)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	slices.SortFunc(s.policies, func(a, b *compiledPolicy) int { return cmp.Compare(a.src.Name, b.src.Name) })
	h, err := sourceHash(s.Policies())
	if err != nil {
		return nil, err
	}
	s.hash = h
	return s, nil
}

func compilePolicy(p *v1alpha1.SessionPolicy) (*compiledPolicy, error) {
	cp := &compiledPolicy{src: *p, rules: make([]*compiledRule, 0, len(p.Spec.Rules))}
	var errs []error
	for i := range p.Spec.Rules {
		r := &p.Spec.Rules[i]
		m, err := compileMatchTracked(r.Match)
		if err != nil {
			errs = append(errs, &v1alpha1.FieldError{
				Policy: p.Name, Rule: r.Name, Field: fmt.Sprintf("spec.rules[%d].match", i), Msg: err.Error(),
			})
			continue
		}
		d := Decision{
			Policy:          p.Name,
			Rule:            r.Name,
			Action:          r.Action,
			Reason:          r.Reason,
			Record:          cmp.Or(r.Record, p.Spec.DefaultRecord),
			MaskingRuleSets: r.MaskingRuleSets,
		}
		if a := r.Approval; a != nil && r.Action == v1alpha1.ActionRequireApproval {
			d.Approval = &Approval{
				ApproverGroups: a.ApproverGroups,
				MinApprovals:   int(a.MinApprovals),
				Timeout:        a.Timeout.Duration,
			}
		}
		cp.lits = append(cp.lits, m.lits...)
		cp.rules = append(cp.rules, &compiledRule{
			prg:        m.prg,
			guards:     m.guards,
			exact:      m.exact,
			decision:   d,
			failClosed: r.Action != v1alpha1.ActionAllow,
		})
	}
	return cp, errors.Join(errs...)
}

// Policies returns the defaulted source of the set, sorted by name. The
// caller may change the result.
func (s *Set) Policies() []v1alpha1.SessionPolicy {
	out := make([]v1alpha1.SessionPolicy, len(s.policies))
	for i, p := range s.policies {
		p.src.DeepCopyInto(&out[i])
	}
	return out
}

// Hash is the hex SHA-256 of the set's names and specs: equal for sets
// that decide alike, whatever their metadata. Decisions can cite it.
func (s *Set) Hash() string { return s.hash }

// Len is the number of policies in the set.
func (s *Set) Len() int { return len(s.policies) }

// For returns the policy that applies to a session of id: the rules of
// every policy whose selector matches, in policy name order. The result is
// immutable and safe for concurrent use; build it once per session.
func (s *Set) For(id Identity) *Policy {
	p := &Policy{
		identity:          id,
		setHash:           s.hash,
		lits:              s.lits,
		defaultDecision:   Decision{Action: v1alpha1.DefaultAction, Record: v1alpha1.DefaultRecord},
		onRecorderFailure: v1alpha1.DefaultOnRecorderFailure,
	}
	p.idVals = identityVals(&p.identity)
	first := true
	for _, cp := range s.policies {
		if !selects(&cp.src.Spec.Selector, &id) {
			continue
		}
		p.policies = append(p.policies, cp.src.Name)
		p.rules = append(p.rules, cp.rules...)
		p.mergeDefaults(&cp.src, first)
		first = false
	}
	return p
}

// selects reports whether sel chooses a session of id.
func selects(sel *v1alpha1.Selector, id *Identity) bool {
	if len(sel.Namespaces) > 0 && !slices.Contains(sel.Namespaces, id.Namespace) {
		return false
	}
	for k, v := range sel.MatchLabels {
		if got, ok := id.Labels[k]; !ok || got != v {
			return false
		}
	}
	if len(sel.ServiceAccounts) == 0 {
		return true
	}
	ns, name := serviceAccountName(id)
	if name == "" {
		return false
	}
	for _, want := range sel.ServiceAccounts {
		if want == name || want == ns+"/"+name {
			return true
		}
	}
	return false
}

// sourceHash hashes the names and specs of policies, in order.
func sourceHash(policies []v1alpha1.SessionPolicy) (string, error) {
	type named struct {
		Name string                     `json:"name"`
		Spec v1alpha1.SessionPolicySpec `json:"spec"`
	}
	src := make([]named, len(policies))
	for i := range policies {
		src[i] = named{Name: policies[i].Name, Spec: policies[i].Spec}
	}
	b, err := json.Marshal(src)
	if err != nil {
		return "", fmt.Errorf("hash policies: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}
