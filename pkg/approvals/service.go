package approvals

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/principal"
	"github.com/chaperone-dev/chaperone/pkg/store"
)

// Log keys.
const (
	logKeyRequest  = "request"
	logKeySession  = "session"
	logKeyApprover = "approver"
	logKeyState    = "state"
	logKeyError    = "error"
	logKeyStatus   = "status"
)

// Appender stores events in a session's chain; store.Store is one.
type Appender interface {
	Append(ctx context.Context, events []*event.Event) (store.AppendResult, error)
}

// Notifier tells people about a new approval (the Slack-style webhook).
type Notifier interface {
	Notify(ctx context.Context, a *Approval) error
}

// Options configures a Service.
type Options struct {
	// NATS receives requests and carries decisions. Required.
	NATS *nats.Conn
	// JetStream holds the approvals bucket. Required.
	JetStream jetstream.JetStream
	// Store records approval events in the sessions. Required.
	Store Appender
	// Notifier is told about each new approval. Nil posts nothing.
	Notifier Notifier
	// Logger; nil discards.
	Logger *slog.Logger
	// ExpireEvery is how often pending approvals are checked for their
	// deadline (default 1s).
	ExpireEvery time.Duration
	// Now is the clock; nil uses time.Now.
	Now func() time.Time
	// Registerer receives the approvals' metrics; nil registers nowhere.
	Registerer prometheus.Registerer
}

// Retention is how long an approval stays in the bucket, decided or not.
const Retention = 30 * 24 * time.Hour

// Service keeps approvals and decides them.
type Service struct {
	nc       *nats.Conn
	kv       jetstream.KeyValue
	used     jetstream.KeyValue
	store    Appender
	notifier Notifier
	log      *slog.Logger
	every    time.Duration
	now      func() time.Time
	metrics  *metrics

	// mu serialises changes made by this process; the KV revision check
	// catches changes made by another server.
	mu sync.Mutex
	wg sync.WaitGroup
}

// New creates (or opens) the approvals buckets and returns the service.
func New(ctx context.Context, o Options) (*Service, error) {
	if o.NATS == nil || o.JetStream == nil || o.Store == nil {
		return nil, errors.New("approvals: NATS, JetStream and Store are required")
	}
	kv, err := o.JetStream.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "Chaperone approvals by request id",
		History:     1,
		// Decided approvals stay in their sessions' chains; the bucket
		// only needs them while a sidecar may still ask (MaxTimeout).
		TTL:     Retention,
		Storage: jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("approvals bucket: %w", err)
	}
	used, err := o.JetStream.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      CallbackBucket,
		Description: "Slack callbacks already used, kept past their validity window",
		History:     1,
		TTL:         2 * (MaxCallbackAge + callbackSkew),
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("approvals callback bucket: %w", err)
	}
	s := &Service{nc: o.NATS, kv: kv, used: used, store: o.Store, notifier: o.Notifier,
		log: o.Logger, every: o.ExpireEvery, now: o.Now, metrics: newMetrics(o.Registerer)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.every <= 0 {
		s.every = time.Second
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

// Run answers requests and expires overdue approvals until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	sub, err := s.nc.QueueSubscribe(RequestSubjectPrefix+"*", QueueGroup, func(m *nats.Msg) { s.handleRequest(ctx, m) })
	if err != nil {
		return fmt.Errorf("subscribe approval requests: %w", err)
	}
	defer func() {
		_ = sub.Drain()
		s.wg.Wait()
	}()
	if err := s.nc.Flush(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("subscribe approval requests: %w", err)
	}
	t := time.NewTicker(s.every)
	defer t.Stop()
	for {
		if _, err := s.ExpireDue(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("approvals expiry", slog.Any(logKeyError, err))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (s *Service) handleRequest(ctx context.Context, m *nats.Msg) {
	var req Request
	var rep Reply
	if err := json.Unmarshal(m.Data, &req); err != nil {
		rep.Error = fmt.Sprintf("%v: %v", ErrInvalid, err)
	} else if tok := strings.TrimPrefix(m.Subject, RequestSubjectPrefix); tok != req.Session {
		rep.Error = fmt.Sprintf("%v: session %q sent on subject %s", ErrInvalid, req.Session, m.Subject)
	} else if a, err := s.Submit(ctx, req); err != nil {
		rep.Error = err.Error()
	} else {
		rep.Approval = a
	}
	if rep.Error != "" {
		s.log.Warn("approval request refused", slog.String(logKeyRequest, req.ID), slog.String(logKeySession, req.Session), slog.String(logKeyError, rep.Error))
	}
	b, _ := json.Marshal(rep)
	if m.Reply != "" {
		if err := m.Respond(b); err != nil {
			s.log.Warn("approval reply", slog.String(logKeyRequest, req.ID), slog.Any(logKeyError, err))
		}
	}
}

// Submit stores a new request, records approval.requested in its session
// and notifies people. A request already known is returned as it stands.
func (s *Service) Submit(ctx context.Context, req Request) (*Approval, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	now := s.now().UTC()
	if req.Time.IsZero() {
		req.Time = now
	}
	if req.MinApprovals == 0 {
		req.MinApprovals = 1
	}
	a := &Approval{Request: req, State: StatePending, Deadline: now.Add(req.Timeout)}
	ev := event.New(req.Session, event.KindApprovalRequested, now)
	ev.Source = event.SourceServer
	ev.Verdict = "held"
	id := req.Requester
	ev.Identity = &id
	ev.ApprovalRequested = &event.ApprovalRequested{Request: req.ID, Rule: req.Rule, Summary: req.Summary,
		ApproverGroups: req.ApproverGroups, MinApprovals: req.MinApprovals, Timeout: req.Timeout}
	a.RequestedEvent = ev.ID

	s.mu.Lock()
	defer s.mu.Unlock()
	data, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("encode approval: %w", err)
	}
	if _, err := s.kv.Create(ctx, req.ID, data); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			old, _, gerr := s.get(ctx, req.ID)
			if gerr != nil {
				return nil, gerr
			}
			if old.Session != req.Session {
				return nil, fmt.Errorf("%w: request id %s belongs to another session", ErrInvalid, req.ID)
			}
			return old, nil
		}
		return nil, fmt.Errorf("store approval %s: %w", req.ID, err)
	}
	// Recorded after the approval is stored: a failure here is logged and
	// the approval stands, so the held operation is still decided.
	if _, err := s.store.Append(ctx, []*event.Event{ev}); err != nil {
		s.log.Error("record approval.requested", slog.String(logKeyRequest, req.ID), slog.Any(logKeyError, err))
	}
	s.metrics.requests.Inc()
	s.log.Info("approval requested", slog.String(logKeyRequest, req.ID), slog.String(logKeySession, req.Session),
		slog.String("rule", req.Rule), slog.String("summary", req.Summary))
	if s.notifier != nil {
		cp := *a
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if err := s.notifier.Notify(nctx, &cp); err != nil {
				s.log.Warn("approval notification", slog.String(logKeyRequest, req.ID), slog.Any(logKeyError, err))
			}
		}()
	}
	return a, nil
}

// Get returns one approval.
func (s *Service) Get(ctx context.Context, id string) (*Approval, error) {
	a, _, err := s.get(ctx, id)
	return a, err
}

func (s *Service) get(ctx context.Context, id string) (*Approval, uint64, error) {
	if !idRE.MatchString(id) {
		return nil, 0, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	e, err := s.kv.Get(ctx, id)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, 0, fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		return nil, 0, fmt.Errorf("load approval %s: %w", id, err)
	}
	var a Approval
	if err := json.Unmarshal(e.Value(), &a); err != nil {
		return nil, 0, fmt.Errorf("decode approval %s: %w", id, err)
	}
	return &a, e.Revision(), nil
}

// List returns the approvals in state (all when empty), oldest first.
func (s *Service) List(ctx context.Context, state string) ([]*Approval, error) {
	kl, err := s.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list approvals: %w", err)
	}
	defer func() { _ = kl.Stop() }()
	out := []*Approval{}
	for k := range kl.Keys() {
		a, err := s.Get(ctx, k)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if state == "" || a.State == state {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, func(x, y *Approval) int {
		if c := x.Time.Compare(y.Time); c != 0 {
			return c
		}
		return strings.Compare(x.ID, y.ID)
	})
	return out, nil
}

// Decide records p's answer to approval id. It refuses, changing nothing,
// an unknown or decided approval, a person outside the approver groups, the
// requester approving, and a second answer from the same person.
func (s *Service) Decide(ctx context.Context, id string, p principal.Principal, approve bool, reason, via string) (*Approval, error) {
	return s.update(ctx, id, func(a *Approval, now time.Time) error {
		if err := a.check(p, approve); err != nil {
			return err
		}
		a.vote(p, approve, reason, via, now)
		s.log.Info("approval answered", slog.String(logKeyRequest, id), slog.String(logKeyApprover, p.Name()),
			slog.Bool("approve", approve), slog.String("via", via), slog.String(logKeyState, a.State))
		return nil
	})
}

// ExpireDue denies every pending approval past its deadline and returns
// how many it expired.
func (s *Service) ExpireDue(ctx context.Context) (int, error) {
	pending, err := s.List(ctx, StatePending)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, p := range pending {
		if s.now().Before(p.Deadline) {
			continue
		}
		_, err := s.update(ctx, p.ID, func(a *Approval, now time.Time) error {
			if a.State != StatePending {
				return ErrDecided
			}
			a.decide(StateExpired, "no decision within "+a.Timeout.String(), now)
			return nil
		})
		switch {
		case err == nil:
			n++
			s.log.Info("approval expired", slog.String(logKeyRequest, p.ID), slog.String(logKeySession, p.Session))
		case errors.Is(err, ErrDecided):
		default:
			return n, err
		}
	}
	return n, nil
}

// update applies fn to the stored approval and saves it; when fn decided
// it, the decision is recorded in the session and sent on NATS.
func (s *Service) update(ctx context.Context, id string, fn func(a *Approval, now time.Time) error) (*Approval, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, rev, err := s.get(ctx, id)
	if err != nil {
		return nil, err
	}
	was := a.State
	now := s.now().UTC()
	if err := fn(a, now); err != nil {
		return nil, err
	}
	data, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("encode approval: %w", err)
	}
	if _, err := s.kv.Update(ctx, id, data, rev); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("%w: changed concurrently, try again", ErrDecided)
		}
		return nil, fmt.Errorf("save approval %s: %w", id, err)
	}
	if was == StatePending && a.Decision != nil {
		s.finish(ctx, a)
	}
	return a, nil
}

// finish records approval.decided and sends the decision. The decision is
// already stored: a sidecar that misses the message gets it in the reply to
// its re-sent request.
func (s *Service) finish(ctx context.Context, a *Approval) {
	d := a.Decision
	s.metrics.decisions.WithLabelValues(d.Decision).Inc()
	ev := event.New(a.Session, event.KindApprovalDecided, d.Time)
	ev.Source = event.SourceServer
	ev.Verdict = StateApproved
	if d.Decision != StateApproved {
		ev.Verdict = StateDenied
	}
	if len(a.Votes) > 0 {
		ev.Identity = &event.Identity{User: a.Votes[len(a.Votes)-1].Approver}
	}
	ev.ApprovalDecided = &event.ApprovalDecided{Request: a.ID, Decision: d.Decision, Approvers: d.Approvers, Reason: d.Reason}
	if _, err := s.store.Append(ctx, []*event.Event{ev}); err != nil {
		s.log.Error("record approval.decided", slog.String(logKeyRequest, a.ID), slog.Any(logKeyError, err))
	}
	b, err := json.Marshal(d)
	if err == nil {
		err = s.nc.Publish(DecisionSubject(a.ID), b)
	}
	if err != nil {
		s.log.Error("send approval decision", slog.String(logKeyRequest, a.ID), slog.Any(logKeyError, err))
	}
	s.log.Info("approval decided", slog.String(logKeyRequest, a.ID), slog.String(logKeySession, a.Session),
		slog.String(logKeyState, d.Decision), slog.Any("approvers", d.Approvers))
}
