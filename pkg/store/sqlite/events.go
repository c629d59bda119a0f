package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/chaperone-dev/chaperone/pkg/chain"
	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/store"
)

// readChunk is how many events Events and Verify read per query. Reading in
// chunks, and calling back only between queries, keeps no read transaction
// open while a slow consumer (an HTTP client) takes its time, so WAL
// checkpoints are never held back by it.
const readChunk = 512

type eventRow struct {
	index     uint64
	id        string
	canonical []byte
	prev      string
	hash      string
}

// head returns the stored event count and head hash of a session, or
// store.ErrNotFound.
func (s *Store) head(ctx context.Context, session string) (uint64, string, error) {
	var n int64
	var h string
	err := s.rdb.QueryRowContext(ctx, `SELECT events, head FROM sessions WHERE id = ?`, session).Scan(&n, &h)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return 0, "", fmt.Errorf("session %q: %w", session, store.ErrNotFound)
	case err != nil:
		return 0, "", fmt.Errorf("session %q: %w", session, err)
	}
	return uint64(n), h, nil
}

// chunk reads up to readChunk events of session with after < index <= upto.
func (s *Store) chunk(ctx context.Context, session string, after, upto uint64) ([]eventRow, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT idx, id, canonical, prev, hash FROM events
		WHERE session = ? AND idx > ? AND idx <= ? ORDER BY idx LIMIT ?`,
		session, int64(after), int64(upto), readChunk)
	if err != nil {
		return nil, fmt.Errorf("read events of %s: %w", session, err)
	}
	defer rows.Close()
	var out []eventRow
	for rows.Next() {
		var r eventRow
		var idx int64
		if err := rows.Scan(&idx, &r.id, &r.canonical, &r.prev, &r.hash); err != nil {
			return nil, fmt.Errorf("read events of %s: %w", session, err)
		}
		r.index = uint64(idx)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read events of %s: %w", session, err)
	}
	return out, nil
}

// scan calls fn for the stored rows of session after index after, up to the
// head that was current when scan started.
func (s *Store) scan(ctx context.Context, session string, after uint64, fn func(eventRow) error) (count uint64, head string, err error) {
	count, head, err = s.head(ctx, session)
	if err != nil {
		return 0, "", err
	}
	for after < count {
		rows, err := s.chunk(ctx, session, after, count)
		if err != nil {
			return 0, "", err
		}
		if len(rows) == 0 {
			break
		}
		for _, r := range rows {
			if err := fn(r); err != nil {
				return 0, "", err
			}
		}
		after = rows[len(rows)-1].index
	}
	return count, head, nil
}

// errStop ends a scan early without an error for the caller.
var errStop = errors.New("stop")

// Events calls fn for the session's events in chain order after index
// after; see store.Store. Each event is decoded from the stored canonical
// bytes and carries its stored Chain link.
func (s *Store) Events(ctx context.Context, session string, after uint64, fn func(*event.Event) error) error {
	if s.closed.Load() {
		return ErrClosed
	}
	var fnErr error
	_, _, err := s.scan(ctx, session, after, func(r eventRow) error {
		var e event.Event
		if err := json.Unmarshal(r.canonical, &e); err != nil {
			return fmt.Errorf("decode stored event %s (index %d): %w", r.id, r.index, err)
		}
		e.Chain = &event.Chain{Index: r.index, Prev: r.prev, Hash: r.hash}
		if err := fn(&e); err != nil {
			fnErr = err
			return errStop
		}
		return nil
	})
	if errors.Is(err, errStop) {
		return fnErr
	}
	return err
}

// Verify recomputes the session's chain from the stored canonical bytes and
// checks it ends at the session's recorded head; see store.Store.
func (s *Store) Verify(ctx context.Context, session string) (store.VerifyResult, error) {
	if s.closed.Load() {
		return store.VerifyResult{}, ErrClosed
	}
	var v chain.Verifier
	count, head, err := s.scan(ctx, session, 0, func(r eventRow) error {
		if !v.Add(chain.Record{Index: r.index, ID: r.id, Prev: r.prev, Hash: r.hash, Canonical: r.canonical}) {
			return errStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return store.VerifyResult{}, fmt.Errorf("verify: %w", err)
	}
	if err == nil {
		v.End(count, head)
	}
	res := store.VerifyResult{Session: session, OK: v.Break() == nil, Events: v.Events(), Head: v.Head()}
	if b := v.Break(); b != nil {
		res.FirstBad = &store.BadLink{Index: b.Index, EventID: b.ID, Reason: b.Reason}
	}
	return res, nil
}
