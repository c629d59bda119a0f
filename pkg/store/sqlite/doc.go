// Package sqlite is the one-machine store backend: sessions, hash-chained
// events and blobs in a single SQLite file, through the pure-Go
// modernc.org/sqlite driver (no cgo).
//
// # Concurrency
//
// All writes go through one connection, so there is never lock contention
// between writers inside the process; Append holds an in-memory copy of each
// recent session's summary (chain head, counts, identity) and so does not
// read before it writes. Reads use a separate pool of read-only connections.
// The database runs in WAL mode, where readers see the last committed state
// and never wait for the writer, nor the writer for them.
//
// # Writing a batch
//
// Append writes a batch in one transaction. Events go in with multi-row
// INSERTs of up to 32 rows (prepared once per row count), which save the
// per-statement work of database/sql, the driver and SQLite's VDBE. Such a
// statement fails as a whole when one of its events is already stored (a
// redelivery): SQLite undoes its rows, and they are inserted one by one,
// the stored ones skipped, so a duplicate never takes a chain index. A
// session row whose indexed columns (identity, origin, start) did not
// change is updated in its other columns only: setting an indexed column,
// even to its old value, rewrites the index entry, four index pages more
// in every commit.
//
// # Durability
//
// The default is journal_mode=WAL with synchronous=NORMAL. A batch is in the
// WAL when Append returns, so it survives a crash or kill of the process;
// the WAL is fsynced at checkpoints, so an operating-system crash or power
// loss can lose the last batches committed before it (never corrupting the
// file). WithFullSync makes every commit fsync the WAL, so an Append that
// returned survives power loss too, at a cost in ingest rate.
//
// # Layout
//
// The schema is versioned in table schema_version and migrated forward by
// Open, idempotently and under a write lock, so several processes opening the
// same new file agree. Times are stored as Unix nanoseconds (store.UnixNano),
// events as the canonical bytes the hash chain covers (event.Canonical), so
// Verify checks exactly what Events returns.
package sqlite
