package approvals

import (
	"errors"
	"slices"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/principal"
)

// Errors of Decide and Submit; check them with errors.Is. Each maps to one
// HTTP status (see pkg/api).
var (
	ErrInvalid      = errors.New("invalid approval request")
	ErrNotFound     = errors.New("approval not found")
	ErrDecided      = errors.New("approval already decided")
	ErrNotApprover  = errors.New("not an approver for this rule")
	ErrSelfApproval = errors.New("requester cannot approve their own operation")
	ErrAlreadyVoted = errors.New("already answered this approval")
)

// Approval is a Request with its state, as stored and listed.
type Approval struct {
	Request
	State string `json:"state"`
	// Deadline is when the request expires.
	Deadline time.Time `json:"deadline"`
	// Votes are the answers given so far, in order.
	Votes []Vote `json:"votes,omitempty"`
	// Decision is set once the approval is decided.
	Decision *Decision `json:"decision,omitempty"`
	// RequestedEvent is the id of the approval.requested event recorded in
	// the session.
	RequestedEvent string `json:"requested_event,omitempty"`
}

// Vote is one person's answer.
type Vote struct {
	Approver string    `json:"approver"`
	Approve  bool      `json:"approve"`
	Reason   string    `json:"reason,omitempty"`
	Via      string    `json:"via,omitempty"`
	Time     time.Time `json:"time"`
}

// Approvers lists who approved so far.
func (a *Approval) Approvers() []string {
	var out []string
	for _, v := range a.Votes {
		if v.Approve {
			out = append(out, v.Approver)
		}
	}
	return out
}

// needed is how many approvals decide the request.
func (a *Approval) needed() int { return max(a.MinApprovals, 1) }

// check applies the rules to p answering a, before anything changes.
func (a *Approval) check(p principal.Principal, approve bool) error {
	if a.State != StatePending {
		return ErrDecided
	}
	// Without approver groups only administrators decide.
	allowed := p.Local || p.InAny(a.ApproverGroups)
	if len(a.ApproverGroups) == 0 {
		allowed = p.Local || slices.Contains(p.Roles, principal.RoleAdmin) || p.InAny([]string{principal.AdminGroup})
	}
	if !allowed {
		return ErrNotApprover
	}
	if approve && (p.Is(a.Requester.User) || p.Is(a.Requester.ServiceAccount)) {
		return ErrSelfApproval
	}
	if slices.ContainsFunc(a.Votes, func(v Vote) bool { return p.Is(v.Approver) }) {
		return ErrAlreadyVoted
	}
	return nil
}

// vote records p's answer and decides the approval when it can: one deny
// denies, the MinApprovals-th distinct approval approves.
func (a *Approval) vote(p principal.Principal, approve bool, reason, via string, now time.Time) {
	a.Votes = append(a.Votes, Vote{Approver: p.Name(), Approve: approve, Reason: reason, Via: via, Time: now})
	switch {
	case !approve:
		a.decide(StateDenied, reason, now)
	case len(a.Approvers()) >= a.needed():
		a.decide(StateApproved, reason, now)
	}
}

func (a *Approval) decide(state, reason string, now time.Time) {
	a.State = state
	a.Decision = &Decision{Request: a.ID, Session: a.Session, Decision: state,
		Approvers: a.Approvers(), Reason: reason, Time: now}
}
