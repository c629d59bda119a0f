package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/chaperone-dev/chaperone/pkg/store"

	// The pure-Go SQLite driver, registered as "sqlite".
	_ "modernc.org/sqlite"
)

// Defaults for Options.
const (
	DefaultBusyTimeout = 10 * time.Second
	DefaultReadConns   = 4
	// DefaultCacheSessions is how many session summaries Append keeps in
	// memory; older ones are read back from the database when needed.
	DefaultCacheSessions = 4096
)

// ErrClosed is returned by calls on a closed Store.
var ErrClosed = errors.New("store closed")

// Option configures Open.
type Option func(*options)

type options struct {
	logger        *slog.Logger
	registerer    prometheus.Registerer
	busyTimeout   time.Duration
	readConns     int
	cacheSessions int
	fullSync      bool
}

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithRegisterer registers the store's metrics with r.
func WithRegisterer(r prometheus.Registerer) Option { return func(o *options) { o.registerer = r } }

// WithBusyTimeout sets how long a statement waits for a lock held by another
// process before failing (DefaultBusyTimeout).
func WithBusyTimeout(d time.Duration) Option { return func(o *options) { o.busyTimeout = d } }

// WithReadConns sets the size of the read connection pool (DefaultReadConns).
func WithReadConns(n int) Option { return func(o *options) { o.readConns = n } }

// WithCacheSessions sets how many session summaries Append caches
// (DefaultCacheSessions).
func WithCacheSessions(n int) Option { return func(o *options) { o.cacheSessions = n } }

// WithFullSync sets synchronous=FULL: every commit is fsynced, so an Append
// that returned survives power loss, not only a process crash.
func WithFullSync() Option { return func(o *options) { o.fullSync = true } }

// Store is a store.Store in one SQLite file. It is safe for concurrent use.
type Store struct {
	log *slog.Logger
	m   *metrics

	// wdb has exactly one connection: the only writer.
	wdb *sql.DB
	// rdb is the read-only pool.
	rdb *sql.DB

	// appendMu serialises Append, which owns heads.
	appendMu      sync.Mutex
	heads         map[string]summary
	cacheSessions int
	stmts         writeStmts

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error

	// beforeCommit, when set by tests, runs just before an Append commits;
	// an error aborts the batch.
	beforeCommit func() error
}

var _ store.Store = (*Store)(nil)

// Open opens or creates the database at path and migrates its schema.
// path must name a file: ":memory:" cannot be shared by the read and write
// connections.
func Open(ctx context.Context, path string, opts ...Option) (*Store, error) {
	o := options{
		busyTimeout:   DefaultBusyTimeout,
		readConns:     DefaultReadConns,
		cacheSessions: DefaultCacheSessions,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	if o.readConns < 1 {
		o.readConns = 1
	}
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("open sqlite store: path %q must be a plain file path", path)
	}
	m, err := newMetrics(o.registerer)
	if err != nil {
		return nil, fmt.Errorf("open sqlite store: %w", err)
	}

	syncMode := "NORMAL"
	if o.fullSync {
		syncMode = "FULL"
	}
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", o.busyTimeout.Milliseconds()))
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous("+syncMode+")")
	wq := cloneValues(q)
	wq.Add("_pragma", "journal_mode(WAL)")
	// A multi-row INSERT keeps the pages it changes in a statement journal,
	// to undo itself if a row fails; in memory that costs a copy, in a
	// temporary file two system calls a page.
	wq.Add("_pragma", "temp_store(MEMORY)")
	// Every write transaction takes the write lock at BEGIN, so it never has
	// to upgrade a read lock (which can fail with SQLITE_BUSY at once).
	wq.Set("_txlock", "immediate")
	rq := cloneValues(q)
	rq.Add("_pragma", "query_only(1)")

	wdb, err := sql.Open("sqlite", path+"?"+wq.Encode())
	if err != nil {
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	wdb.SetConnMaxIdleTime(0)

	from, err := migrate(ctx, wdb)
	if err != nil {
		_ = wdb.Close()
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}

	// Readers open after the writer made the file a WAL database.
	rdb, err := sql.Open("sqlite", path+"?"+rq.Encode())
	if err != nil {
		_ = wdb.Close()
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	rdb.SetMaxOpenConns(o.readConns)
	rdb.SetMaxIdleConns(o.readConns)

	s := &Store{
		log:           o.logger,
		m:             m,
		wdb:           wdb,
		rdb:           rdb,
		heads:         make(map[string]summary),
		cacheSessions: o.cacheSessions,
	}
	if err := s.prepare(ctx); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	if err := s.Ping(ctx); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	s.log.Info("sqlite store open", "path", path, "schema_from", from, "schema", SchemaVersion, "synchronous", syncMode)
	return s, nil
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// Ping checks that both the writer and a reader answer.
func (s *Store) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	var one int
	if err := s.rdb.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
		return fmt.Errorf("ping sqlite read pool: %w", err)
	}
	if err := s.wdb.PingContext(ctx); err != nil {
		return fmt.Errorf("ping sqlite writer: %w", err)
	}
	return nil
}

// Close checkpoints the WAL into the main file and closes every connection.
// Calls after the first return the first's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.appendMu.Lock()
		defer s.appendMu.Unlock()
		s.stmts.close()
		// Best effort: a reader still open elsewhere can keep the WAL busy.
		if _, err := s.wdb.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
			s.log.Debug("sqlite checkpoint on close", "error", err)
		}
		s.closeErr = errors.Join(s.rdb.Close(), s.wdb.Close())
	})
	return s.closeErr
}
