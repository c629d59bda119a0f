package approvals

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

// Subjects and the bucket of the approval protocol.
const (
	// RequestSubjectPrefix + session carries a Request; the server answers
	// with a Reply once the request is stored (or already was).
	RequestSubjectPrefix = "chaperone.approvals.request."
	// DecisionSubjectPrefix + request id carries the Decision.
	DecisionSubjectPrefix = "chaperone.approvals.decision."
	// Bucket is the JetStream KV bucket holding every approval by id.
	Bucket = "chaperone-approvals"
	// CallbackBucket remembers used Slack callbacks for a while.
	CallbackBucket = "chaperone-approvals-callbacks"
	// QueueGroup is the server's queue group on request subjects.
	QueueGroup = "chaperone-approvals"
)

// RequestSubject is the subject a sidecar sends a session's requests on.
func RequestSubject(session string) string { return RequestSubjectPrefix + session }

// DecisionSubject is the subject the decision of request id is sent on.
func DecisionSubject(id string) string { return DecisionSubjectPrefix + id }

// States of an Approval; the last three are also Decision values.
const (
	StatePending  = "pending"
	StateApproved = "approved"
	StateDenied   = "denied"
	StateExpired  = "expired"
)

// Request is a held operation waiting for people, as a sidecar sends it.
type Request struct {
	// ID names the request; the sidecar picks it (a ULID) so a re-sent
	// request is the same request. Letters, digits, '-' and '_'.
	ID      string `json:"id"`
	Session string `json:"session"`
	// Rule is the policy rule that held the operation.
	Rule string `json:"rule,omitempty"`
	// Summary is one line for people: "delete secret prod/db".
	Summary string `json:"summary"`
	// What, Who and Where detail the operation, its actor and its target.
	What  string `json:"what,omitempty"`
	Who   string `json:"who,omitempty"`
	Where string `json:"where,omitempty"`
	// ApproverGroups may decide; empty means administrators only.
	ApproverGroups []string `json:"approver_groups,omitempty"`
	// MinApprovals is how many distinct approvers must approve (at least 1).
	MinApprovals int `json:"min_approvals,omitempty"`
	// Timeout is how long the operation waits; no decision by then denies it.
	Timeout time.Duration `json:"timeout_ns"`
	// Requester is who the held operation acts for; they cannot approve it.
	Requester event.Identity `json:"requester"`
	// Time is when the operation was held.
	Time time.Time `json:"time"`
}

// Decision is the final answer to a Request.
type Decision struct {
	Request string `json:"request"`
	Session string `json:"session"`
	// Decision is StateApproved, StateDenied or StateExpired.
	Decision  string    `json:"decision"`
	Approvers []string  `json:"approvers,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	Time      time.Time `json:"time"`
}

// Allowed reports whether the operation may go ahead.
func (d Decision) Allowed() bool { return d.Decision == StateApproved }

// Reply is the server's answer to a Request message: the stored approval,
// with its decision if it was already decided, or an error.
type Reply struct {
	Approval *Approval `json:"approval,omitempty"`
	Error    string    `json:"error,omitempty"`
}

var idRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// MaxTimeout caps Request.Timeout.
const MaxTimeout = 24 * time.Hour

// Validate checks a request as received.
func (r *Request) Validate() error {
	if !idRE.MatchString(r.ID) {
		return fmt.Errorf("%w: request id %q (want 1-128 of [A-Za-z0-9_-])", ErrInvalid, r.ID)
	}
	if err := event.ValidSession(r.Session); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if r.Summary == "" {
		return fmt.Errorf("%w: request %s has no summary", ErrInvalid, r.ID)
	}
	if r.Timeout <= 0 || r.Timeout > MaxTimeout {
		return fmt.Errorf("%w: request %s timeout %s (want >0 and <=%s)", ErrInvalid, r.ID, r.Timeout, MaxTimeout)
	}
	if r.MinApprovals < 0 || r.MinApprovals > 16 {
		return fmt.Errorf("%w: request %s min approvals %d (want 0-16)", ErrInvalid, r.ID, r.MinApprovals)
	}
	return nil
}

// ErrNoAnswer is returned by Ask when the server never stored the request
// before ctx ended.
var ErrNoAnswer = errors.New("approval server did not answer")

// resendEvery is how often Ask re-sends its request while waiting. The
// request is idempotent; the reply carries a decision the waiter may have
// missed while disconnected or while the server restarted.
const resendEvery = 2 * time.Second

// Ask sends req and waits for its decision: the sidecar's side of the
// protocol. It returns the decision, or an expired one when the request's
// timeout passes without an answer from the server (the held operation is
// then refused either way).
func Ask(ctx context.Context, nc *nats.Conn, req Request) (Decision, error) {
	if err := req.Validate(); err != nil {
		return Decision{}, err
	}
	sub, err := nc.SubscribeSync(DecisionSubject(req.ID))
	if err != nil {
		return Decision{}, fmt.Errorf("subscribe decision: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	data, err := json.Marshal(req)
	if err != nil {
		return Decision{}, fmt.Errorf("encode request: %w", err)
	}
	// The server may be away for a while; give up a little after the
	// deadline the server would have applied.
	wctx, cancel := context.WithTimeout(ctx, req.Timeout+resendEvery)
	defer cancel()
	for {
		rctx, rcancel := context.WithTimeout(wctx, resendEvery)
		msg, err := nc.RequestWithContext(rctx, RequestSubject(req.Session), data)
		rcancel()
		if err == nil {
			var rep Reply
			if err := json.Unmarshal(msg.Data, &rep); err != nil {
				return Decision{}, fmt.Errorf("decode reply: %w", err)
			}
			if rep.Error != "" {
				return Decision{}, fmt.Errorf("approval request refused: %s", rep.Error)
			}
			if rep.Approval != nil && rep.Approval.Decision != nil {
				return *rep.Approval.Decision, nil
			}
			m, err := sub.NextMsgWithContext(waitCtx(wctx))
			if err == nil {
				var d Decision
				if err := json.Unmarshal(m.Data, &d); err != nil {
					return Decision{}, fmt.Errorf("decode decision: %w", err)
				}
				return d, nil
			}
		}
		if wctx.Err() != nil {
			if ctx.Err() != nil {
				return Decision{}, fmt.Errorf("%w: %w", ErrNoAnswer, ctx.Err())
			}
			return Decision{Request: req.ID, Session: req.Session, Decision: StateExpired,
				Reason: "no answer from the approval server", Time: time.Now().UTC()}, nil
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, nats.ErrTimeout) {
			return Decision{}, fmt.Errorf("send approval request: %w", err)
		}
		if errors.Is(err, nats.ErrNoResponders) {
			// Nobody listens yet: wait before the next try.
			t := time.NewTimer(resendEvery / 4)
			select {
			case <-wctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
	}
}

// waitCtx bounds one wait for the decision message to resendEvery.
func waitCtx(ctx context.Context) context.Context {
	c, cancel := context.WithTimeout(ctx, resendEvery)
	context.AfterFunc(c, cancel)
	return c
}
