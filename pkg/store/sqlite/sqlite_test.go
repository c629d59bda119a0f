package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/store"
	"github.com/chaperone-dev/chaperone/pkg/store/storetest"
)

func openTest(t testing.TB, path string, opts ...Option) *Store {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "chaperone.db")
	}
	s, err := Open(context.Background(), path, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTest(t, "") }, storetest.Options{
		Tamper: func(t *testing.T, s store.Store, session string, index uint64) {
			// Change one byte of the stored canonical JSON, as someone
			// editing the database file would.
			res, err := s.(*Store).wdb.ExecContext(t.Context(),
				`UPDATE events SET canonical = replace(canonical, '"seq":', '"seq":1') WHERE session = ? AND idx = ?`,
				session, int64(index))
			if err != nil {
				t.Fatalf("tamper: %v", err)
			}
			if n, _ := res.RowsAffected(); n != 1 {
				t.Fatalf("tamper changed %d rows", n)
			}
		},
	})
}

func TestPragmas(t *testing.T) {
	s := openTest(t, "")
	defer s.Close()
	check := func(pool, pragma, want string) {
		db := s.rdb
		if pool == "write" {
			db = s.wdb
		}
		var got string
		if err := db.QueryRowContext(t.Context(), "PRAGMA "+pragma).Scan(&got); err != nil {
			t.Fatalf("%s PRAGMA %s: %v", pool, pragma, err)
		}
		if !strings.EqualFold(got, want) {
			t.Errorf("%s PRAGMA %s = %s, want %s", pool, pragma, got, want)
		}
	}
	for _, pool := range []string{"write", "read"} {
		check(pool, "journal_mode", "wal")
		check(pool, "synchronous", "1") // NORMAL
		check(pool, "foreign_keys", "1")
		check(pool, "busy_timeout", fmt.Sprint(DefaultBusyTimeout.Milliseconds()))
	}
	check("read", "query_only", "1")
	check("write", "query_only", "0")
	check("write", "temp_store", "2") // MEMORY: multi-row inserts' statement journal

	full := openTest(t, "", WithFullSync())
	defer full.Close()
	var got int
	if err := full.wdb.QueryRowContext(t.Context(), "PRAGMA synchronous").Scan(&got); err != nil || got != 2 {
		t.Fatalf("WithFullSync: synchronous = %d, %v; want 2 (FULL)", got, err)
	}
}

func TestOpenRejectsPaths(t *testing.T) {
	for _, p := range []string{"", ":memory:", "file:x.db", "a?b.db"} {
		if s, err := Open(t.Context(), p); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", p)
		}
	}
}

func TestMigrateIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.db")
	s := openTest(t, path)
	mustAppend(t, s, batch("m", 3)...)
	s.Close()
	s = openTest(t, path)
	defer s.Close()
	var v, n int
	if err := s.rdb.QueryRowContext(t.Context(), `SELECT max(version), count(*) FROM schema_version`).Scan(&v, &n); err != nil {
		t.Fatal(err)
	}
	if v != SchemaVersion || n != 1 || SchemaVersion != len(migrations) {
		t.Fatalf("schema_version = %d (%d rows), want %d", v, n, SchemaVersion)
	}
	if _, err := s.wdb.ExecContext(t.Context(), `UPDATE schema_version SET version = ?`, SchemaVersion+1); err != nil {
		t.Fatal(err)
	}
	if s2, err := Open(t.Context(), path); !errors.Is(err, ErrSchemaTooNew) {
		if s2 != nil {
			s2.Close()
		}
		t.Fatalf("Open of a newer schema = %v, want ErrSchemaTooNew", err)
	}
}

// batch returns n valid events of session.
func batch(session string, n int) []*event.Event {
	out := make([]*event.Event, n)
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range out {
		e := event.New(session, event.KindHTTPRequest, t0.Add(time.Duration(i)*time.Millisecond))
		e.Seq = uint64(i + 1)
		e.HTTPRequest = &event.HTTPRequest{Proto: "HTTP/1.1", Method: "GET", URL: fmt.Sprintf("/%d", i)}
		out[i] = e
	}
	return out
}

func mustAppend(t testing.TB, s *Store, events ...*event.Event) store.AppendResult {
	t.Helper()
	res, err := s.Append(context.Background(), events)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return res
}

func verifyOK(t *testing.T, s *Store, session string, n uint64) {
	t.Helper()
	vr, err := s.Verify(t.Context(), session)
	if err != nil || !vr.OK || vr.Events != n {
		t.Fatalf("Verify(%s) = %+v, %v; want ok with %d events", session, vr, err, n)
	}
}

// TestReopenContinuesChain checks that the chain head survives a restart
// (the cache starts empty and reads it back).
func TestReopenContinuesChain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.db")
	s := openTest(t, path)
	mustAppend(t, s, batch("r", 5)...)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Append(t.Context(), batch("r", 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v, want ErrClosed", err)
	}
	s = openTest(t, path)
	defer s.Close()
	more := batch("r", 4)
	mustAppend(t, s, more...)
	if more[0].Chain.Index != 6 {
		t.Fatalf("after reopen the chain restarted at %d", more[0].Chain.Index)
	}
	verifyOK(t, s, "r", 9)
}

// TestCacheEviction runs with a cache of one session, so most Appends read
// the head back from the database.
func TestCacheEviction(t *testing.T) {
	s := openTest(t, "", WithCacheSessions(1))
	defer s.Close()
	for round := range 3 {
		for _, id := range []string{"e1", "e2", "e3"} {
			b := batch(id, 2)
			mustAppend(t, s, b...)
			if want := uint64(round*2 + 1); b[0].Chain.Index != want {
				t.Fatalf("%s round %d: index %d, want %d", id, round, b[0].Chain.Index, want)
			}
		}
	}
	if len(s.heads) > 1 {
		t.Fatalf("cache holds %d sessions, want at most 1", len(s.heads))
	}
	for _, id := range []string{"e1", "e2", "e3"} {
		verifyOK(t, s, id, 6)
	}
}

// TestFailedCommitRollsBackCache checks that a batch that fails after its
// inserts leaves neither rows nor a moved head in the cache behind.
func TestFailedCommitRollsBackCache(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	s := openTest(t, "", WithRegisterer(reg))
	defer s.Close()
	mustAppend(t, s, batch("fail", 3)...)

	boom := errors.New("disk on fire")
	s.beforeCommit = func() error { return boom }
	lost := batch("fail", 4)
	lost = append(lost, batch("fail-new", 2)...)
	if _, err := s.Append(t.Context(), lost); !errors.Is(err, boom) {
		t.Fatalf("Append = %v, want %v", err, boom)
	}
	for _, e := range lost {
		if e.Chain != nil {
			t.Fatal("a rolled-back Append set a chain link")
		}
	}
	s.beforeCommit = nil
	if _, err := s.Session(t.Context(), "fail-new"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("rolled-back session exists: %v", err)
	}

	// The same events again: stored, not duplicates, chained after the
	// three committed ones.
	res := mustAppend(t, s, lost...)
	if res.Stored != 6 || res.Duplicates != 0 {
		t.Fatalf("retry = %+v, want 6 stored", res)
	}
	if lost[0].Chain.Index != 4 {
		t.Fatalf("retry chained at %d, want 4", lost[0].Chain.Index)
	}
	verifyOK(t, s, "fail", 7)
	verifyOK(t, s, "fail-new", 2)

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "/" + l.GetValue()
			}
			got[key] = m.GetCounter().GetValue()
		}
	}
	for key, want := range map[string]float64{
		"chaperone_store_append_failures_total":           1,
		"chaperone_store_appended_events_total/stored":    9,
		"chaperone_store_appended_events_total/duplicate": 0,
	} {
		if got[key] != want {
			t.Errorf("%s = %v, want %v", key, got[key], want)
		}
	}
}

// TestReadsDoNotWaitForWriter holds the write lock in an open transaction
// and reads meanwhile: in WAL mode readers see the last commit at once.
func TestReadsDoNotWaitForWriter(t *testing.T) {
	s := openTest(t, "")
	defer s.Close()
	mustAppend(t, s, batch("busy", 3)...)

	tx, err := s.wdb.BeginTx(t.Context(), nil) // BEGIN IMMEDIATE: holds the write lock
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(t.Context(), `UPDATE sessions SET head = 'x' WHERE id = 'busy'`); err != nil {
		t.Fatal(err)
	}
	// The deadline only bounds a broken build; in WAL mode the reads below
	// do not wait for the open write transaction at all.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	ss, err := s.Session(ctx, "busy")
	if err != nil {
		t.Fatalf("Session during a write: %v", err)
	}
	if ss.Head == "x" {
		t.Fatal("reader saw uncommitted data")
	}
	if _, err := s.Sessions(ctx, store.SessionQuery{}); err != nil {
		t.Fatalf("Sessions during a write: %v", err)
	}
	verifyOK(t, s, "busy", 3)
}

// TestAppendRejectsLargeBadBatch covers the parallel encoding path: one bad
// event anywhere refuses the whole batch, and the first bad one is named.
func TestAppendRejectsLargeBadBatch(t *testing.T) {
	s := openTest(t, "")
	defer s.Close()
	b := batch("big", 500)
	b[150].HTTPRequest = nil
	b[420].Session = "bad session"
	_, err := s.Append(t.Context(), b)
	if !errors.Is(err, event.ErrInvalid) || !strings.Contains(err.Error(), b[150].ID) {
		t.Fatalf("Append = %v, want ErrInvalid naming %s", err, b[150].ID)
	}
	b[150] = nil
	if _, err := s.Append(t.Context(), b); !errors.Is(err, event.ErrInvalid) || !strings.Contains(err.Error(), "nil event at 150") {
		t.Fatalf("Append with nil = %v", err)
	}
	if _, err := s.Session(t.Context(), "big"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a refused batch stored something: %v", err)
	}
	b = batch("big", 500)
	if res := mustAppend(t, s, b...); res.Stored != 500 {
		t.Fatalf("stored %d", res.Stored)
	}
	verifyOK(t, s, "big", 500)
}
