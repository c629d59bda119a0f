package policy

import (
	"fmt"
	"sync"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"

	"github.com/chaperone-dev/chaperone/pkg/policy/v1alpha1"
)

// Decision is what a policy says about one request.
type Decision struct {
	// Policy is the policy whose rule (or default) decided; empty when no
	// policy selects the session.
	Policy string
	// Rule is the matching rule; empty when the default applied.
	Rule   string
	Action v1alpha1.Action
	// Reason is the rule's reason, for the refused or held client.
	Reason string
	Record v1alpha1.RecordLevel
	// Approval is set for RequireApproval. It is shared: do not modify.
	Approval *Approval
	// MaskingRuleSets name the masking rule sets to apply.
	MaskingRuleSets []string
	// Err is the first rule evaluation error met on the way, if any: that
	// rule was skipped (Allow) or applied (Deny, RequireApproval).
	Err error
}

// Policy is the merged policy of one session: the rules of the selected
// policies in order, and their defaults. Build it with Set.For.
type Policy struct {
	identity          Identity
	setHash           string
	policies          []string
	rules             []*compiledRule
	defaultDecision   Decision
	onRecorderFailure v1alpha1.FailureMode
	maskResponses     bool
	// idVals are the CEL values of the identity's fields, by slot from
	// slotIDUser: the identity is fixed for the session, so they are
	// converted once (For) and not per decision.
	idVals [numSlots - slotIDUser]ref.Val
	// lits are the set's string literals as CEL values (Set.lits).
	lits map[string]ref.Val
}

// Policies names the selected policies, in evaluation order.
func (p *Policy) Policies() []string { return p.policies }

// SetHash is the hash of the set the policy came from (Set.Hash).
func (p *Policy) SetHash() string { return p.setHash }

// OnRecorderFailure is FailOpen only when every selected policy says so.
func (p *Policy) OnRecorderFailure() v1alpha1.FailureMode { return p.onRecorderFailure }

// MaskResponses reports whether responses to the agent are masked inline:
// when any selected policy asks for it.
func (p *Policy) MaskResponses() bool { return p.maskResponses }

// mergeDefaults folds one selected policy's defaults into p: the
// strictest wins (Deny over Allow, fuller recording, FailClosed), so adding
// a policy never loosens what another one demands.
func (p *Policy) mergeDefaults(src *v1alpha1.SessionPolicy, first bool) {
	s := &src.Spec
	d := &p.defaultDecision
	p.maskResponses = p.maskResponses || s.MaskResponses
	if first {
		*d = Decision{Policy: src.Name, Action: s.DefaultAction, Record: s.DefaultRecord}
		p.onRecorderFailure = s.OnRecorderFailure
		return
	}
	if s.DefaultAction == v1alpha1.ActionDeny && d.Action != v1alpha1.ActionDeny {
		d.Action, d.Policy = v1alpha1.ActionDeny, src.Name
	}
	if recordRank(s.DefaultRecord) > recordRank(d.Record) {
		d.Record = s.DefaultRecord
	}
	if s.OnRecorderFailure == v1alpha1.FailClosed {
		p.onRecorderFailure = v1alpha1.FailClosed
	}
}

func recordRank(r v1alpha1.RecordLevel) int {
	switch r {
	case v1alpha1.RecordFull:
		return 2
	case v1alpha1.RecordMetadataOnly:
		return 1
	}
	return 0
}

// activation feeds one request and the session's identity to CEL. It
// caches each field's CEL value (vals, by slot) for the rules after the
// first that read it; it is taken from a pool per Decide and never shared.
type activation struct {
	req  *Request
	id   *Identity
	vals [numSlots]ref.Val
	// lits are the policy's string literals as CEL values (Set.lits).
	lits map[string]ref.Val
}

// ResolveName implements interpreter.Activation.
func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "request":
		return (*reqView)(a), true
	case "identity":
		return (*identityView)(a), true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (a *activation) Parent() interpreter.Activation { return nil }

// activations recycles activations between Decide calls, so a decision
// allocates at most the CEL values of the request fields its rules read.
var activations = sync.Pool{New: func() any { return new(activation) }}

// emptyRequest stands in for a nil request.
var emptyRequest Request

// Decide evaluates the rules in order and returns the first match's
// decision, or the default. A rule whose evaluation fails (cost limit,
// missing map key, …) is skipped when its action is Allow and applies
// otherwise; Decision.Err says so. req is only read. Decide is safe for
// concurrent use.
//
// A rule made only of guards (see guard) is decided without CEL; the
// others run with the identity's CEL values bound once per session (For),
// so a decision allocates nothing but the request fields CEL reads.
func (p *Policy) Decide(req *Request) Decision {
	if req == nil {
		req = &emptyRequest
	}
	act := activations.Get().(*activation)
	act.req, act.id, act.lits = req, &p.identity, p.lits
	copy(act.vals[slotIDUser:], p.idVals[:])
	var frame *interpreter.ExecutionFrame
	defer func() {
		if frame != nil {
			frame.Close()
		}
		*act = activation{} // drop the request's values before reuse
		activations.Put(act)
	}()
	var firstErr error
rules:
	for _, r := range p.rules {
		for _, g := range r.guards {
			if !g.pass(act) {
				continue rules // cannot match: see guard
			}
		}
		if r.exact {
			d := r.decision
			d.Err = firstErr
			return d
		}
		if frame == nil {
			// One frame serves every rule: the programs have no default
			// variables and no asynchronous functions, so CEL would build
			// the same frame per rule.
			f, err := interpreter.NewExecutionFrame(act)
			if err != nil { // cannot happen: act is an Activation
				return Decision{Policy: p.defaultDecision.Policy, Action: v1alpha1.ActionDeny, Record: v1alpha1.RecordFull, Err: err}
			}
			frame = f
		}
		out, _, err := r.prg.Eval(frame)
		if err == nil {
			if b, ok := out.(types.Bool); ok {
				if b {
					d := r.decision
					d.Err = firstErr
					return d
				}
				continue
			}
			err = fmt.Errorf("match yielded %s, not bool", out.Type().TypeName())
		}
		err = fmt.Errorf("policy %q rule %q: %w", r.decision.Policy, r.decision.Rule, err)
		if firstErr == nil {
			firstErr = err
		}
		if r.failClosed {
			d := r.decision
			d.Err = firstErr
			return d
		}
	}
	d := p.defaultDecision
	d.Err = firstErr
	return d
}
