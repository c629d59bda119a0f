package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	sqlitedriver "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/chaperone-dev/chaperone/pkg/chain"
	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/store"
)

// insertBuckets are the row counts of the multi-row event INSERTs prepared
// at Open. A batch is written with the largest that fits, so n new events
// take n/32 statements plus one per bit set in n%32 (beyond the lowest,
// which a single-row insert takes). One statement for many rows saves the
// per-statement work of database/sql, the driver and SQLite's VDBE (cursors
// opened, positioned and closed), about a third of an insert.
var insertBuckets = [...]int{32, 16, 8, 4, 2}

// eventArgs is how many values one events row binds.
const eventArgs = 9

// writeStmts are prepared once on the single writer connection and bound to
// each Append transaction with Tx.StmtContext, which then reuses them.
type writeStmts struct {
	// insertEvent writes one row and skips it if its id is stored.
	insertEvent *sql.Stmt
	// insertEvents[k] writes insertBuckets[k] rows; a stored id fails the
	// whole statement (SQLite undoes its rows) and the rows are written
	// one by one instead.
	insertEvents  [len(insertBuckets)]*sql.Stmt
	upsertSession *sql.Stmt
	// updateSessionTail changes only the columns that no index of
	// sessions covers. Setting an indexed column rewrites its index entry
	// even to the same value: four index pages more in every commit.
	updateSessionTail *sql.Stmt
	insertTag         *sql.Stmt
	loadSession       *sql.Stmt
	insertBlob        *sql.Stmt
}

// insertEventsSQL is the INSERT of n events rows.
func insertEventsSQL(n int) string {
	row := "(?" + strings.Repeat(", ?", eventArgs-1) + ")"
	return `INSERT INTO events (session, idx, id, seq, time, kind, canonical, prev, hash) VALUES ` +
		row + strings.Repeat(", "+row, n-1)
}

func (s *Store) prepare(ctx context.Context) error {
	type query struct {
		dst   **sql.Stmt
		query string
	}
	queries := []query{
		{&s.stmts.insertEvent, insertEventsSQL(1) + ` ON CONFLICT (id) DO NOTHING`},
		{&s.stmts.upsertSession, `INSERT INTO sessions (id, user_name, namespace, pod, service_account, origin,
				start_seen, started, last_event, ended, events, head)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET user_name = excluded.user_name, namespace = excluded.namespace,
				pod = excluded.pod, service_account = excluded.service_account, origin = excluded.origin,
				start_seen = excluded.start_seen, started = excluded.started, last_event = excluded.last_event,
				ended = excluded.ended, events = excluded.events, head = excluded.head`},
		{&s.stmts.updateSessionTail, `UPDATE sessions SET last_event = ?, ended = ?, events = ?, head = ? WHERE id = ?`},
		{&s.stmts.insertTag, `INSERT INTO session_tags (session, kind, value) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`},
		{&s.stmts.loadSession, `SELECT user_name, namespace, pod, service_account, origin, start_seen,
			started, last_event, ended, events, head FROM sessions WHERE id = ?`},
		{&s.stmts.insertBlob, `INSERT INTO blobs (ref, size, data) VALUES (?, ?, ?) ON CONFLICT (ref) DO NOTHING`},
	}
	for k, n := range insertBuckets {
		queries = append(queries, query{&s.stmts.insertEvents[k], insertEventsSQL(n)})
	}
	for _, q := range queries {
		st, err := s.wdb.PrepareContext(ctx, q.query)
		if err != nil {
			return fmt.Errorf("prepare statement: %w", err)
		}
		*q.dst = st
	}
	return nil
}

func (w *writeStmts) close() {
	all := []*sql.Stmt{w.insertEvent, w.upsertSession, w.updateSessionTail, w.insertTag, w.loadSession, w.insertBlob}
	for _, st := range append(all, w.insertEvents[:]...) {
		if st != nil {
			_ = st.Close()
		}
	}
}

// sessionState is what one Append knows of a session it touches.
type sessionState struct {
	// stored is the summary as committed before this Append (events == 0:
	// the session has no row yet); cur includes this Append's events.
	stored, cur summary
	// dirty is set once an event of this Append was stored.
	dirty bool
	// saved is cur before the multi-row insert numbered attempt, which
	// restores it if the insert fails.
	attempt int
	saved   summary
}

// batchWriter writes one Append's rows inside its transaction.
type batchWriter struct {
	ctx    context.Context
	s      *Store
	tx     *sql.Tx
	events []*event.Event
	canon  [][]byte
	res    *store.AppendResult

	// links[i] is the link of events[i] once stored; chains holds them, so
	// a batch allocates its links at once.
	links    []*event.Chain
	chains   []event.Chain
	sessions map[string]*sessionState
	tags     map[tag]struct{}

	// txStmts are the prepared statements bound to tx, made when first used.
	txInsertEvent  *sql.Stmt
	txInsertEvents [len(insertBuckets)]*sql.Stmt
	txLoadSession  *sql.Stmt

	args    []any
	attempt int
	undo    []*sessionState
}

func newBatchWriter(ctx context.Context, s *Store, tx *sql.Tx, events []*event.Event, canon [][]byte, res *store.AppendResult) *batchWriter {
	return &batchWriter{
		ctx: ctx, s: s, tx: tx, events: events, canon: canon, res: res,
		links:    make([]*event.Chain, len(events)),
		chains:   make([]event.Chain, len(events)),
		sessions: make(map[string]*sessionState),
		tags:     make(map[tag]struct{}),
		args:     make([]any, 0, eventArgs*min(len(events), insertBuckets[0])),
	}
}

// txStmt returns st bound to the transaction, binding it on first use.
func (w *batchWriter) txStmt(bound **sql.Stmt, st *sql.Stmt) *sql.Stmt {
	if *bound == nil {
		*bound = w.tx.StmtContext(w.ctx, st)
	}
	return *bound
}

// insertEvents inserts every event not repeated earlier in the batch, and
// counts those already stored as duplicates.
func (w *batchWriter) insertEvents() error {
	seen := make(map[string]struct{}, len(w.events))
	run := make([]int, 0, len(w.events))
	for i, e := range w.events {
		if _, dup := seen[e.ID]; dup {
			w.res.Duplicates++
			continue
		}
		seen[e.ID] = struct{}{}
		if err := w.loadSession(e.Session); err != nil {
			return err
		}
		run = append(run, i)
	}
	for len(run) > 0 {
		k := bucketFor(len(run))
		var err error
		if k < 0 {
			err = w.insertOne(run[0])
			run = run[1:]
		} else {
			err = w.insertMany(k, run[:insertBuckets[k]])
			run = run[insertBuckets[k]:]
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// bucketFor returns the index of the largest insertBucket of at most n
// rows, or -1 for a single-row insert.
func bucketFor(n int) int {
	for k, b := range insertBuckets {
		if b <= n {
			return k
		}
	}
	return -1
}

// loadSession makes the session's state known, from the cache, else from
// the database, else as a new session.
func (w *batchWriter) loadSession(id string) error {
	if _, ok := w.sessions[id]; ok {
		return nil
	}
	m, err := w.s.summaryOf(w.ctx, w.txStmt(&w.txLoadSession, w.s.stmts.loadSession), id)
	if err != nil {
		return err
	}
	w.sessions[id] = &sessionState{stored: *m, cur: *m}
	return nil
}

// next returns event i's link as the next one of its session.
func (w *batchWriter) next(st *sessionState, i int) *event.Chain {
	l := &w.chains[i]
	*l = event.Chain{Index: st.cur.events + 1, Prev: st.cur.head, Hash: chain.Link(st.cur.head, w.canon[i])}
	return l
}

// appendRow appends event i's column values with link l to args.
func (w *batchWriter) appendRow(args []any, i int, l *event.Chain) []any {
	e := w.events[i]
	return append(args, e.Session, int64(l.Index), e.ID, int64(e.Seq), store.UnixNano(e.Time),
		string(e.Kind), w.canon[i], l.Prev, l.Hash)
}

// stored records that event i was inserted with link l, which cur already
// includes.
func (w *batchWriter) stored(st *sessionState, i int, l *event.Chain) {
	w.res.Stored++
	w.links[i] = l
	st.dirty = true
	tags(w.events[i], w.addTag)
}

func (w *batchWriter) addTag(t tag) { w.tags[t] = struct{}{} }

// insertOne inserts event i unless its id is stored.
func (w *batchWriter) insertOne(i int) error {
	e := w.events[i]
	st := w.sessions[e.Session]
	l := w.next(st, i)
	r, err := w.txStmt(&w.txInsertEvent, w.s.stmts.insertEvent).ExecContext(w.ctx, w.appendRow(w.args[:0], i, l)...)
	if err != nil {
		return fmt.Errorf("append: insert event %s: %w", e.ID, err)
	}
	if n, err := r.RowsAffected(); err != nil {
		return fmt.Errorf("append: insert event %s: %w", e.ID, err)
	} else if n == 0 {
		// Already stored by an earlier batch: keep its link.
		w.res.Duplicates++
		return nil
	}
	st.cur.apply(e, l.Index, l.Hash)
	w.stored(st, i, l)
	return nil
}

// insertMany inserts events rows (insertBuckets[k] of them) with one
// statement. If one of them is already stored, the statement fails as a
// whole and the rows are inserted one by one, so the duplicate takes no
// chain index.
func (w *batchWriter) insertMany(k int, rows []int) error {
	w.attempt++
	w.undo = w.undo[:0]
	args := w.args[:0]
	for _, i := range rows {
		st := w.sessions[w.events[i].Session]
		if st.attempt != w.attempt {
			st.attempt, st.saved = w.attempt, st.cur
			w.undo = append(w.undo, st)
		}
		l := w.next(st, i)
		st.cur.apply(w.events[i], l.Index, l.Hash)
		args = w.appendRow(args, i, l)
	}
	w.args = args
	_, err := w.txStmt(&w.txInsertEvents[k], w.s.stmts.insertEvents[k]).ExecContext(w.ctx, args...)
	switch {
	case err == nil:
		for _, i := range rows {
			w.stored(w.sessions[w.events[i].Session], i, &w.chains[i])
		}
		return nil
	case isConstraint(err):
		// Most likely a redelivered event. SQLite undid the statement's
		// rows; the one-by-one inserts skip the stored ones and report any
		// other conflict.
		for _, st := range w.undo {
			st.cur = st.saved
		}
		for _, i := range rows {
			if err := w.insertOne(i); err != nil {
				return err
			}
		}
		return nil
	default:
		return fmt.Errorf("append: insert %d events from %s: %w", len(rows), w.events[rows[0]].ID, err)
	}
}

// isConstraint reports whether err is SQLite's constraint violation.
func isConstraint(err error) bool {
	var se *sqlitedriver.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_CONSTRAINT
}

// writeSessions writes the summaries of the sessions that got events.
func (w *batchWriter) writeSessions() error {
	var tail, upsert *sql.Stmt
	for id, st := range w.sessions {
		if !st.dirty {
			continue
		}
		m := &st.cur
		if st.stored.events > 0 && st.stored.sameIndexed(m) {
			r, err := w.txStmt(&tail, w.s.stmts.updateSessionTail).ExecContext(w.ctx, m.last, m.ended, int64(m.events), m.head, id)
			if err != nil {
				return fmt.Errorf("append: update session %s: %w", id, err)
			}
			if n, err := r.RowsAffected(); err == nil && n == 1 {
				continue
			}
			// The row is gone (changed behind this store's back): write it whole.
		}
		if _, err := w.txStmt(&upsert, w.s.stmts.upsertSession).ExecContext(w.ctx, id, m.user, m.namespace, m.pod, m.serviceAccount, m.origin,
			m.startSeen, m.started, m.last, m.ended, int64(m.events), m.head); err != nil {
			return fmt.Errorf("append: update session %s: %w", id, err)
		}
	}
	return nil
}

// writeTags adds the batch's tags to their sessions.
func (w *batchWriter) writeTags() error {
	if len(w.tags) == 0 {
		return nil
	}
	ins := w.tx.StmtContext(w.ctx, w.s.stmts.insertTag)
	for t := range w.tags {
		if _, err := ins.ExecContext(w.ctx, t.session, t.kind, t.value); err != nil {
			return fmt.Errorf("append: tag session %s: %w", t.session, err)
		}
	}
	return nil
}

// appendTx runs Append's transaction. It returns each stored event's link
// (nil for duplicates) and the states of the sessions it touched.
func (s *Store) appendTx(ctx context.Context, events []*event.Event, canon [][]byte, res *store.AppendResult) ([]*event.Chain, map[string]*sessionState, error) {
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("append: begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	w := newBatchWriter(ctx, s, tx, events, canon, res)
	if err := w.insertEvents(); err != nil {
		return nil, nil, err
	}
	if err := w.writeSessions(); err != nil {
		return nil, nil, err
	}
	if err := w.writeTags(); err != nil {
		return nil, nil, err
	}
	if s.beforeCommit != nil {
		if err := s.beforeCommit(); err != nil {
			return nil, nil, fmt.Errorf("append: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, nil, fmt.Errorf("append: commit: %w", err)
	}
	return w.links, w.sessions, nil
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
