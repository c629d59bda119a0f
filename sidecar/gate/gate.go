package gate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/approvals"
	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/policy"
	"github.com/chaperone-dev/chaperone/pkg/policy/v1alpha1"
)

// Verdicts, the values of event.Event.Verdict on the records of a gated
// request.
const (
	VerdictAllow    = "allow"
	VerdictDeny     = "deny"
	VerdictHeld     = "held"
	VerdictApproved = "approved"
	VerdictDenied   = "denied"
)

// RuleCredential names the sidecar's own rule in decisions about the
// credential placeholder.
const RuleCredential = "chaperone:credential-placeholder"

// Log keys.
const (
	keyRule   = "rule"
	keyReason = "reason"
	keyErr    = "err"
	keyHash   = "hash"
	keySource = "source"
)

// Asker asks people to approve a held request and waits for their
// answer; NATSAsker is the one over the approvals protocol.
type Asker interface {
	Ask(ctx context.Context, req approvals.Request) (approvals.Decision, error)
}

// Options configure a Gate.
type Options struct {
	// Session is the session's id, for approval requests.
	Session string
	// Identity selects the policies of the session (policy.Set.For) and
	// is what rules see as `identity`.
	Identity policy.Identity
	// Requester is who a held request acts for, in approval requests.
	Requester event.Identity
	// Asker asks for approvals; nil refuses every request a rule holds.
	Asker Asker
	// Credentials broker the service-account token; nil brokers none.
	Credentials *Credentials
	// Logger; nil discards.
	Logger *slog.Logger
}

// Gate decides what happens to each request of a session: the policy in
// force, the approval hold and the credential swap. It is safe for
// concurrent use; the policy can be replaced at any time (Load).
type Gate struct {
	opts Options
	log  *slog.Logger
	cur  atomic.Pointer[loaded]
}

// loaded is a policy in force.
type loaded struct {
	set    *policy.Set
	pol    *policy.Policy // nil: no policy
	source string
}

// New returns a Gate without a policy: until Load, requests are allowed
// (the credential rules still apply).
func New(o Options) *Gate {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	g := &Gate{opts: o, log: o.Logger}
	g.cur.Store(&loaded{source: SourceNone})
	return g
}

// Sources of a loaded policy, the values of event.PolicyLoaded.Source.
const (
	SourceServer  = "server"
	SourceSession = "session"
	SourceCache   = "cache"
	SourceNone    = "none"
)

// Load puts set in force for the requests decided from now on (nil: no
// policy) and returns the policy.loaded payload that records it.
func (g *Gate) Load(set *policy.Set, source string) *event.PolicyLoaded {
	l := &loaded{set: set, source: source}
	out := &event.PolicyLoaded{Source: source}
	if set != nil {
		l.pol = set.For(g.opts.Identity)
		out.Hash = set.Hash()
		out.Policies = l.pol.Policies()
	}
	g.cur.Store(l)
	g.log.Info("policy loaded", keyHash, out.Hash, keySource, source, "policies", out.Policies)
	return out
}

// Hash is the hash of the set in force, "" without one.
func (g *Gate) Hash() string {
	if s := g.cur.Load().set; s != nil {
		return s.Hash()
	}
	return ""
}

// Active reports whether a policy is in force: then every request gets a
// decision event.
func (g *Gate) Active() bool { return g.cur.Load().pol != nil }

// Brokering reports whether the gate swaps a credential placeholder (and
// refuses it off the API server): then every request must be looked at,
// with or without a policy.
func (g *Gate) Brokering() bool { return g.opts.Credentials != nil }

// MaskResponses reports whether the policy in force asks for responses to
// the agent to be masked inline.
func (g *Gate) MaskResponses() bool {
	p := g.cur.Load().pol
	return p != nil && p.MaskResponses()
}

// FailOpen reports what the policy in force says about relaying while
// recording cannot be guaranteed; ok is false without a policy.
func (g *Gate) FailOpen() (failOpen, ok bool) {
	p := g.cur.Load().pol
	if p == nil {
		return false, false
	}
	return p.OnRecorderFailure() == v1alpha1.FailOpen, true
}

// Input is one request to decide.
type Input struct {
	Request policy.Request
	// Kube is set when the request goes to the Kubernetes API server.
	Kube bool
	// Credentials are the values of the request's headers that can carry
	// a credential (Authorization, Proxy-Authorization, and any header
	// when the placeholder might hide there): name → value.
	Headers map[string]string
	// Summary is one line for people, for approvals.
	Summary string
}

// Outcome is what the gate decided about one request.
type Outcome struct {
	Decision policy.Decision
	// Decided is set when a policy (or the credential rule) decided: the
	// decision is recorded as an event.
	Decided bool
	// Verdict is the event verdict of the request's records.
	Verdict string
	// Held is set while the request waits for approval (Await).
	Held bool
	// Refusal, when set, answers the client instead of forwarding.
	Refusal *Refusal
	// Authorization, when set, replaces the request's Authorization
	// header: the real credential in place of the placeholder.
	Authorization string
	// As is the identity the request is sent with, for the record, never
	// the credential.
	As string
	// Record is the record level of the request's exchange.
	Record v1alpha1.RecordLevel
	// Approval is the answer to a held request, after Await.
	Approval *approvals.Decision
}

// Decide decides in at once, without waiting for people: Held outcomes go
// to Await next.
func (g *Gate) Decide(in *Input) Outcome {
	out := Outcome{Verdict: VerdictAllow, Record: v1alpha1.RecordFull}
	if c := g.opts.Credentials; c != nil {
		if name, ok := c.carries(in.Headers); ok {
			if !in.Kube {
				out.Decided = true
				out.Verdict = VerdictDeny
				out.Decision = policy.Decision{
					Rule:   RuleCredential,
					Action: v1alpha1.ActionDeny,
					Reason: fmt.Sprintf("the credential placeholder (header %s) may only be sent to the Kubernetes API server", name),
					Record: v1alpha1.RecordFull,
				}
				out.Refusal = refusalFor(in, &out.Decision, out.Decision.Reason)
				return out
			}
			tok, as, err := c.Token()
			if err != nil {
				out.Decided = true
				out.Verdict = VerdictDeny
				out.Decision = policy.Decision{Rule: RuleCredential, Action: v1alpha1.ActionDeny,
					Reason: "the service-account credential is unavailable", Record: v1alpha1.RecordFull, Err: err}
				out.Refusal = refusalFor(in, &out.Decision, out.Decision.Reason)
				return out
			}
			out.Authorization = "Bearer " + tok
			out.As = as
		} else if in.Kube {
			out.As = bearerSubject(in.Headers["authorization"])
		}
	}
	l := g.cur.Load()
	if l.pol == nil {
		return out
	}
	d := l.pol.Decide(&in.Request)
	out.Decided = true
	out.Decision = d
	out.Record = d.Record
	if d.Err != nil {
		g.log.Warn("policy rule failed", keyRule, d.Rule, keyErr, d.Err)
	}
	switch d.Action {
	case v1alpha1.ActionAllow:
	case v1alpha1.ActionRequireApproval:
		out.Verdict = VerdictHeld
		out.Held = true
	default: // Deny, and anything unknown
		out.Verdict = VerdictDeny
		out.Refusal = refusalFor(in, &d, "denied by policy")
	}
	return out
}

// Await holds a request that out (from Decide) holds until people answer
// through the Asker, or its timeout passes, and returns the final outcome:
// approved (forwarded unchanged) or denied with the reason.
func (g *Gate) Await(ctx context.Context, in *Input, out Outcome) Outcome {
	if !out.Held {
		return out
	}
	out.Held = false
	d := &out.Decision
	a := d.Approval
	if a == nil {
		a = &policy.Approval{MinApprovals: 1, Timeout: v1alpha1.DefaultApprovalTimeout.Duration}
	}
	if g.opts.Asker == nil {
		return g.denied(in, out, "no approval service is configured")
	}
	now := time.Now()
	req := approvals.Request{
		ID:             event.NewID(now),
		Session:        g.opts.Session,
		Rule:           strings.Trim(d.Policy+"/"+d.Rule, "/"),
		Summary:        in.Summary,
		What:           in.Summary,
		Who:            who(&g.opts.Requester),
		Where:          where(&in.Request),
		ApproverGroups: a.ApproverGroups,
		MinApprovals:   a.MinApprovals,
		Timeout:        a.Timeout,
		Requester:      g.opts.Requester,
		Time:           now.UTC(),
	}
	if req.Summary == "" {
		req.Summary = where(&in.Request)
	}
	if req.Timeout <= 0 {
		req.Timeout = v1alpha1.DefaultApprovalTimeout.Duration
	}
	g.log.Info("request held for approval", keyRule, req.Rule, "request", req.ID, "timeout", req.Timeout)
	ans, err := g.opts.Asker.Ask(ctx, req)
	if err != nil {
		g.log.Warn("approval", keyErr, err)
		reason := "approval unavailable: " + err.Error()
		if errors.Is(err, approvals.ErrNoAnswer) {
			reason = "no answer from the approval service"
		}
		return g.denied(in, out, reason)
	}
	out.Approval = &ans
	if ans.Allowed() {
		out.Verdict = VerdictApproved
		return out
	}
	reason := "denied"
	switch ans.Decision {
	case approvals.StateExpired:
		reason = "no approval before the timeout (" + req.Timeout.String() + ")"
	case approvals.StateDenied:
		if len(ans.Approvers) > 0 {
			reason = "denied by " + strings.Join(ans.Approvers, ", ")
		}
	}
	if ans.Reason != "" {
		reason += ": " + ans.Reason
	}
	return g.denied(in, out, reason)
}

func (g *Gate) denied(in *Input, out Outcome, why string) Outcome {
	out.Verdict = VerdictDenied
	out.Refusal = refusalFor(in, &out.Decision, why)
	return out
}

func who(id *event.Identity) string {
	var parts []string
	if id.User != "" {
		parts = append(parts, id.User)
	}
	if id.ServiceAccount != "" {
		sa := id.ServiceAccount
		if id.Namespace != "" && !strings.Contains(sa, ":") {
			sa = id.Namespace + "/" + sa
		}
		parts = append(parts, "serviceaccount "+sa)
	}
	if id.Pod != "" {
		parts = append(parts, "pod "+id.Pod)
	}
	return strings.Join(parts, ", ")
}

func where(r *policy.Request) string {
	host := r.Destination.Host
	if host == "" {
		host = r.HTTP.Host
	}
	if host == "" {
		host = r.Destination.IP
	}
	if r.Destination.Port != 0 && !strings.Contains(host, ":") {
		host = fmt.Sprintf("%s:%d", host, r.Destination.Port)
	}
	return host
}
