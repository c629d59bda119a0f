package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/chaperone-dev/chaperone/pkg/store"
)

// PutBlobs stores blobs by content hash in one transaction. Every ref must be
// store.BlobRef of its data; otherwise nothing is stored and the error wraps
// store.ErrBlobMismatch.
func (s *Store) PutBlobs(ctx context.Context, blobs []store.Blob) error {
	if s.closed.Load() {
		return ErrClosed
	}
	for _, b := range blobs {
		if err := store.CheckBlob(b); err != nil {
			return fmt.Errorf("put blobs: %w", err)
		}
	}
	if len(blobs) == 0 {
		return nil
	}
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("put blobs: begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	ins := tx.StmtContext(ctx, s.stmts.insertBlob)
	for _, b := range blobs {
		data := b.Data
		if data == nil {
			data = []byte{} // NOT NULL column; an empty blob is still a blob.
		}
		if _, err := ins.ExecContext(ctx, b.Ref, len(data), data); err != nil {
			return fmt.Errorf("put blob %s: %w", b.Ref, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("put blobs: commit: %w", err)
	}
	return nil
}

// Blob returns a blob's bytes, or store.ErrNotFound.
func (s *Store) Blob(ctx context.Context, ref string) ([]byte, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	var data []byte
	err := s.rdb.QueryRowContext(ctx, `SELECT data FROM blobs WHERE ref = ?`, ref).Scan(&data)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("blob %q: %w", ref, store.ErrNotFound)
	case err != nil:
		return nil, fmt.Errorf("blob %q: %w", ref, err)
	}
	if data == nil {
		data = []byte{}
	}
	return data, nil
}

// BlobInSession reports whether an event of the session names ref. It looks
// at the canonical bytes of that session's events only, so its cost is one
// session's size; it serves occasional body downloads of limited readers.
func (s *Store) BlobInSession(ctx context.Context, session, ref string) (bool, error) {
	if s.closed.Load() {
		return false, ErrClosed
	}
	var one int
	err := s.rdb.QueryRowContext(ctx,
		`SELECT 1 FROM events WHERE session = ? AND instr(canonical, ?) > 0 LIMIT 1`,
		session, []byte(`"`+ref+`"`)).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("blob %q in session %q: %w", ref, session, err)
	}
	return true, nil
}
