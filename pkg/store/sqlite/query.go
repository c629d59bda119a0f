package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/store"
)

const sessionColumns = `id, user_name, namespace, pod, service_account, origin, started, last_event, ended, events, head`

// Sessions lists sessions newest first (start time, then id, descending),
// one keyset page at a time; see store.Store.
func (s *Store) Sessions(ctx context.Context, q store.SessionQuery) (store.SessionPage, error) {
	var page store.SessionPage
	if s.closed.Load() {
		return page, ErrClosed
	}
	limit := q.PageSize()
	var where []string
	var args []any
	eq := func(col, v string) {
		if v != "" {
			where = append(where, col+" = ?")
			args = append(args, v)
		}
	}
	eq("user_name", q.User)
	eq("namespace", q.Namespace)
	eq("pod", q.Pod)
	if !q.Since.IsZero() {
		where = append(where, "started >= ?")
		args = append(args, store.UnixNano(q.Since))
	}
	if !q.Until.IsZero() {
		where = append(where, "started < ?")
		args = append(args, store.UnixNano(q.Until))
	}
	hasTag := func(kind, v string) {
		if v != "" {
			where = append(where, "EXISTS (SELECT 1 FROM session_tags t WHERE t.session = s.id AND t.kind = ? AND t.value = ?)")
			args = append(args, kind, v)
		}
	}
	hasTag(tagResource, q.Resource)
	hasTag(tagVerdict, q.Verdict)
	if q.Cursor != "" {
		c, err := store.ParseCursor(q.Cursor)
		if err != nil {
			return page, err
		}
		n := store.UnixNano(c.Started)
		where = append(where, "(started < ? OR (started = ? AND id < ?))")
		args = append(args, n, n, c.ID)
	}
	query := "SELECT " + sessionColumns + " FROM sessions s"
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY started DESC, id DESC LIMIT ?"
	args = append(args, limit+1)

	rows, err := s.rdb.QueryContext(ctx, query, args...)
	if err != nil {
		return page, fmt.Errorf("list sessions: %w", err)
	}
	defer rows.Close()
	page.Sessions = []store.Session{}
	for rows.Next() {
		ss, err := scanSession(rows)
		if err != nil {
			return store.SessionPage{}, fmt.Errorf("list sessions: %w", err)
		}
		page.Sessions = append(page.Sessions, ss)
	}
	if err := rows.Err(); err != nil {
		return store.SessionPage{}, fmt.Errorf("list sessions: %w", err)
	}
	if len(page.Sessions) > limit {
		page.Sessions = page.Sessions[:limit]
		last := page.Sessions[limit-1]
		page.Next = store.Cursor{Started: last.Started, ID: last.ID}.String()
	}
	if err := s.fillTags(ctx, page.Sessions); err != nil {
		return store.SessionPage{}, err
	}
	return page, nil
}

// Session returns one session's summary, or store.ErrNotFound.
func (s *Store) Session(ctx context.Context, id string) (store.Session, error) {
	if s.closed.Load() {
		return store.Session{}, ErrClosed
	}
	row := s.rdb.QueryRowContext(ctx, "SELECT "+sessionColumns+" FROM sessions WHERE id = ?", id)
	ss, err := scanSession(row)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return store.Session{}, fmt.Errorf("session %q: %w", id, store.ErrNotFound)
	case err != nil:
		return store.Session{}, fmt.Errorf("session %q: %w", id, err)
	}
	out := []store.Session{ss}
	if err := s.fillTags(ctx, out); err != nil {
		return store.Session{}, err
	}
	return out[0], nil
}

type scanner interface{ Scan(dst ...any) error }

func scanSession(r scanner) (store.Session, error) {
	var ss store.Session
	var started, last, events int64
	if err := r.Scan(&ss.ID, &ss.User, &ss.Namespace, &ss.Pod, &ss.ServiceAccount, &ss.Origin,
		&started, &last, &ss.Ended, &events, &ss.Head); err != nil {
		return ss, err
	}
	ss.Started = time.Unix(0, started).UTC()
	ss.LastEvent = time.Unix(0, last).UTC()
	ss.Events = uint64(events)
	return ss, nil
}

// fillTags sets Resources and Verdicts of sessions, sorted, with one query.
func (s *Store) fillTags(ctx context.Context, sessions []store.Session) error {
	if len(sessions) == 0 {
		return nil
	}
	byID := make(map[string]*store.Session, len(sessions))
	args := make([]any, len(sessions))
	for i := range sessions {
		byID[sessions[i].ID] = &sessions[i]
		args[i] = sessions[i].ID
	}
	query := "SELECT session, kind, value FROM session_tags WHERE session IN (?" +
		strings.Repeat(", ?", len(sessions)-1) + ") ORDER BY session, kind, value"
	rows, err := s.rdb.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("read session tags: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, kind, value string
		if err := rows.Scan(&id, &kind, &value); err != nil {
			return fmt.Errorf("read session tags: %w", err)
		}
		ss := byID[id]
		switch kind {
		case tagResource:
			ss.Resources = append(ss.Resources, value)
		case tagVerdict:
			ss.Verdicts = append(ss.Verdicts, value)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read session tags: %w", err)
	}
	return nil
}
