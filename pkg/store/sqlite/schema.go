package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// migrations are applied in order; migrations[i] brings the schema from
// version i to i+1. Never edit a released migration: append a new one.
var migrations = []string{
	// 1: the first schema.
	`
CREATE TABLE sessions (
	id              TEXT PRIMARY KEY,
	user_name       TEXT NOT NULL DEFAULT '',
	namespace       TEXT NOT NULL DEFAULT '',
	pod             TEXT NOT NULL DEFAULT '',
	service_account TEXT NOT NULL DEFAULT '',
	origin          TEXT NOT NULL DEFAULT '',
	start_seen      INTEGER NOT NULL DEFAULT 0, -- identity came from session.start
	started         INTEGER NOT NULL,           -- Unix ns of the earliest event
	last_event      INTEGER NOT NULL,           -- Unix ns of the latest event
	ended           INTEGER NOT NULL DEFAULT 0,
	events          INTEGER NOT NULL DEFAULT 0, -- chain index of the head
	head            TEXT NOT NULL DEFAULT ''
);
CREATE INDEX sessions_started   ON sessions (started, id);
CREATE INDEX sessions_user      ON sessions (user_name, started, id);
CREATE INDEX sessions_namespace ON sessions (namespace, started, id);
CREATE INDEX sessions_pod       ON sessions (pod, started, id);

CREATE TABLE session_tags (
	session TEXT NOT NULL REFERENCES sessions (id) DEFERRABLE INITIALLY DEFERRED,
	kind    TEXT NOT NULL CHECK (kind IN ('resource', 'verdict')),
	value   TEXT NOT NULL,
	PRIMARY KEY (session, kind, value)
) WITHOUT ROWID;
CREATE INDEX session_tags_value ON session_tags (kind, value, session);

CREATE TABLE events (
	session   TEXT NOT NULL REFERENCES sessions (id) DEFERRABLE INITIALLY DEFERRED,
	idx       INTEGER NOT NULL,
	id        TEXT NOT NULL UNIQUE,
	seq       INTEGER NOT NULL,
	time      INTEGER NOT NULL,
	kind      TEXT NOT NULL,
	canonical BLOB NOT NULL,
	prev      TEXT NOT NULL,
	hash      TEXT NOT NULL,
	PRIMARY KEY (session, idx)
);

CREATE TABLE blobs (
	ref  TEXT PRIMARY KEY,
	size INTEGER NOT NULL,
	data BLOB NOT NULL
);
`,
}

// SchemaVersion is the schema version this build writes: the number of
// migrations.
const SchemaVersion = 1

// ErrSchemaTooNew is returned by Open for a database written by a newer
// build.
var ErrSchemaTooNew = errors.New("database schema is newer than this build")

// migrate brings db's schema to SchemaVersion. It runs every step inside an
// immediate (write-locked) transaction that re-reads the version, so
// concurrent openers apply each step once.
func migrate(ctx context.Context, db *sql.DB) (from int, err error) {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return 0, fmt.Errorf("create schema_version: %w", err)
	}
	from = -1
	for {
		done, v, err := migrateStep(ctx, db)
		if err != nil {
			return from, err
		}
		if from < 0 {
			from = v
		}
		if done {
			return from, nil
		}
	}
}

// migrateStep applies the next migration, if any. It reports whether the
// schema is current and the version it found.
func migrateStep(ctx context.Context, db *sql.DB) (done bool, version int, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, 0, fmt.Errorf("begin migration: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_version`).Scan(&version); err != nil {
		return false, 0, fmt.Errorf("read schema version: %w", err)
	}
	switch {
	case version > SchemaVersion:
		return false, version, fmt.Errorf("%w: version %d, this build knows %d", ErrSchemaTooNew, version, SchemaVersion)
	case version == SchemaVersion:
		return true, version, nil
	}
	if _, err := tx.ExecContext(ctx, migrations[version]); err != nil {
		return false, version, fmt.Errorf("migrate schema to version %d: %w", version+1, err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM schema_version`); err != nil {
		return false, version, fmt.Errorf("record schema version: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (?)`, version+1); err != nil {
		return false, version, fmt.Errorf("record schema version: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return false, version, fmt.Errorf("commit migration to version %d: %w", version+1, err)
	}
	return false, version, nil
}
