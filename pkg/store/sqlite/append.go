package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/chain"
	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/store"
)

// writeStmts are prepared once on the single writer connection and bound to
// each Append transaction with Tx.StmtContext, which then reuses them.
type writeStmts struct {
	insertEvent   *sql.Stmt
	upsertSession *sql.Stmt
	insertTag     *sql.Stmt
	loadSession   *sql.Stmt
	insertBlob    *sql.Stmt
}

func (s *Store) prepare(ctx context.Context) error {
	for _, p := range []struct {
		dst   **sql.Stmt
		query string
	}{
		{&s.stmts.insertEvent, `INSERT INTO events (session, idx, id, seq, time, kind, canonical, prev, hash)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`},
		{&s.stmts.upsertSession, `INSERT INTO sessions (id, user_name, namespace, pod, service_account, origin,
				start_seen, started, last_event, ended, events, head)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET user_name = excluded.user_name, namespace = excluded.namespace,
				pod = excluded.pod, service_account = excluded.service_account, origin = excluded.origin,
				start_seen = excluded.start_seen, started = excluded.started, last_event = excluded.last_event,
				ended = excluded.ended, events = excluded.events, head = excluded.head`},
		{&s.stmts.insertTag, `INSERT INTO session_tags (session, kind, value) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`},
		{&s.stmts.loadSession, `SELECT user_name, namespace, pod, service_account, origin, start_seen,
			started, last_event, ended, events, head FROM sessions WHERE id = ?`},
		{&s.stmts.insertBlob, `INSERT INTO blobs (ref, size, data) VALUES (?, ?, ?) ON CONFLICT (ref) DO NOTHING`},
	} {
		st, err := s.wdb.PrepareContext(ctx, p.query)
		if err != nil {
			return fmt.Errorf("prepare statement: %w", err)
		}
		*p.dst = st
	}
	return nil
}

func (w *writeStmts) close() {
	for _, st := range []*sql.Stmt{w.insertEvent, w.upsertSession, w.insertTag, w.loadSession, w.insertBlob} {
		if st != nil {
			_ = st.Close()
		}
	}
}

// summary is the part of a session row Append maintains. Append works on
// copies and writes them back to the cache only after its commit, so a
// failed batch leaves the cache as it was.
type summary struct {
	user, namespace, pod, serviceAccount, origin string
	// startSeen is set once a session.start event set the identity; before
	// that each field is taken from the first event that carries it.
	startSeen bool
	started   int64
	last      int64
	ended     bool
	events    uint64
	head      string
}

// apply folds a newly stored event into the summary.
func (m *summary) apply(e *event.Event, index uint64, hash string) {
	t := store.UnixNano(e.Time)
	if m.events == 0 || t < m.started {
		m.started = t
	}
	if m.events == 0 || t > m.last {
		m.last = t
	}
	m.events = index
	m.head = hash
	if e.Kind == event.KindSessionEnd {
		m.ended = true
	}
	fromStart := e.Kind == event.KindSessionStart && !m.startSeen
	if fromStart {
		m.startSeen = true
		m.origin = e.SessionStart.Origin
	}
	if id := e.Identity; id != nil {
		take := func(dst *string, v string) {
			if v != "" && (fromStart || *dst == "") {
				*dst = v
			}
		}
		take(&m.user, id.User)
		take(&m.namespace, id.Namespace)
		take(&m.pod, id.Pod)
		take(&m.serviceAccount, id.ServiceAccount)
	}
}

// Tag kinds in session_tags.
const (
	tagResource = "resource"
	tagVerdict  = "verdict"
)

type tag struct{ session, kind, value string }

// tags returns what e adds to its session's resource and verdict filters.
func tags(e *event.Event, add func(tag)) {
	if d := e.Dest; d != nil {
		if d.Host != "" {
			add(tag{e.Session, tagResource, d.Host})
		} else if d.Addr != "" {
			add(tag{e.Session, tagResource, d.Addr})
		}
	}
	if k := e.K8sRequest; k != nil && k.Resource != "" {
		add(tag{e.Session, tagResource, "k8s:" + k.Resource})
	}
	if e.Verdict != "" {
		add(tag{e.Session, tagVerdict, e.Verdict})
	}
}

// Append stores a batch in one transaction; see store.Store.
func (s *Store) Append(ctx context.Context, events []*event.Event) (store.AppendResult, error) {
	var res store.AppendResult
	if s.closed.Load() {
		return res, ErrClosed
	}
	if len(events) == 0 {
		return res, nil
	}
	start := time.Now()
	canon, err := encodeAll(events)
	if err != nil {
		return res, fmt.Errorf("append: %w", err)
	}

	s.appendMu.Lock()
	defer s.appendMu.Unlock()
	if s.closed.Load() {
		return res, ErrClosed
	}
	links, touched, err := s.appendTx(ctx, events, canon, &res)
	if err != nil {
		s.m.failed.Inc()
		return store.AppendResult{}, err
	}
	// Committed: publish the new heads and links.
	if len(s.heads)+len(touched) > s.cacheSessions {
		for id := range s.heads {
			if len(s.heads)+len(touched) <= s.cacheSessions {
				break
			}
			delete(s.heads, id)
		}
	}
	for id, m := range touched {
		s.heads[id] = *m
	}
	for i, l := range links {
		if l != nil {
			events[i].Chain = l
		}
	}
	s.m.stored.Add(float64(res.Stored))
	s.m.duplicates.Add(float64(res.Duplicates))
	s.m.batch.Observe(time.Since(start).Seconds())
	return res, nil
}

// parallelMin is the batch size from which encodeAll uses every CPU.
const parallelMin = 64

// encodeAll validates events and returns their canonical bytes. This is
// about a third of Append's CPU time and needs no lock, so large batches are
// split over all CPUs while the writer connection waits.
func encodeAll(events []*event.Event) ([][]byte, error) {
	canon := make([][]byte, len(events))
	encode := func(lo, hi int) error {
		for i := lo; i < hi; i++ {
			e := events[i]
			if e == nil {
				return fmt.Errorf("%w: nil event at %d", event.ErrInvalid, i)
			}
			if err := e.Validate(); err != nil {
				return err
			}
			c, err := event.Canonical(e)
			if err != nil {
				return err
			}
			canon[i] = c
		}
		return nil
	}
	workers := min(runtime.GOMAXPROCS(0), len(events)/parallelMin*2)
	if workers <= 1 {
		return canon, encode(0, len(events))
	}
	errs := make([]error, workers)
	var wg sync.WaitGroup
	per := (len(events) + workers - 1) / workers
	for w := range workers {
		lo, hi := w*per, min((w+1)*per, len(events))
		wg.Go(func() { errs[w] = encode(lo, hi) })
	}
	wg.Wait()
	// The first error in batch order, whichever worker found it.
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return canon, nil
}

// appendTx runs Append's transaction. It returns each stored event's link
// (nil for duplicates) and the updated summaries of the sessions it touched.
func (s *Store) appendTx(ctx context.Context, events []*event.Event, canon [][]byte, res *store.AppendResult) ([]*event.Chain, map[string]*summary, error) {
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("append: begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	insEvent := tx.StmtContext(ctx, s.stmts.insertEvent)
	load := tx.StmtContext(ctx, s.stmts.loadSession)

	links := make([]*event.Chain, len(events))
	touched := make(map[string]*summary)
	dirty := make(map[string]bool)
	seen := make(map[string]struct{}, len(events))
	newTags := make(map[tag]struct{})
	addTag := func(t tag) { newTags[t] = struct{}{} }

	for i, e := range events {
		if _, dup := seen[e.ID]; dup {
			res.Duplicates++
			continue
		}
		seen[e.ID] = struct{}{}
		m := touched[e.Session]
		if m == nil {
			m, err = s.summaryOf(ctx, load, e.Session)
			if err != nil {
				return nil, nil, err
			}
			touched[e.Session] = m
		}
		l := &event.Chain{Index: m.events + 1, Prev: m.head, Hash: chain.Link(m.head, canon[i])}
		r, err := insEvent.ExecContext(ctx, e.Session, int64(l.Index), e.ID, int64(e.Seq), store.UnixNano(e.Time),
			string(e.Kind), canon[i], l.Prev, l.Hash)
		if err != nil {
			return nil, nil, fmt.Errorf("append: insert event %s: %w", e.ID, err)
		}
		if n, err := r.RowsAffected(); err != nil {
			return nil, nil, fmt.Errorf("append: insert event %s: %w", e.ID, err)
		} else if n == 0 {
			// Already stored by an earlier batch: keep its link.
			res.Duplicates++
			continue
		}
		res.Stored++
		links[i] = l
		m.apply(e, l.Index, l.Hash)
		dirty[e.Session] = true
		tags(e, addTag)
	}

	upsert := tx.StmtContext(ctx, s.stmts.upsertSession)
	for id := range dirty {
		m := touched[id]
		if _, err := upsert.ExecContext(ctx, id, m.user, m.namespace, m.pod, m.serviceAccount, m.origin,
			m.startSeen, m.started, m.last, m.ended, int64(m.events), m.head); err != nil {
			return nil, nil, fmt.Errorf("append: update session %s: %w", id, err)
		}
	}
	insTag := tx.StmtContext(ctx, s.stmts.insertTag)
	for t := range newTags {
		if _, err := insTag.ExecContext(ctx, t.session, t.kind, t.value); err != nil {
			return nil, nil, fmt.Errorf("append: tag session %s: %w", t.session, err)
		}
	}
	if s.beforeCommit != nil {
		if err := s.beforeCommit(); err != nil {
			return nil, nil, fmt.Errorf("append: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, nil, fmt.Errorf("append: commit: %w", err)
	}
	return links, touched, nil
}

// summaryOf returns a copy of a session's summary: from the cache, else from
// the database, else a new empty one.
func (s *Store) summaryOf(ctx context.Context, load *sql.Stmt, id string) (*summary, error) {
	if m, ok := s.heads[id]; ok {
		return &m, nil
	}
	var m summary
	var events int64
	err := load.QueryRowContext(ctx, id).Scan(&m.user, &m.namespace, &m.pod, &m.serviceAccount, &m.origin,
		&m.startSeen, &m.started, &m.last, &m.ended, &events, &m.head)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return &summary{}, nil
	case err != nil:
		return nil, fmt.Errorf("append: load session %s: %w", id, err)
	}
	m.events = uint64(events)
	return &m, nil
}
