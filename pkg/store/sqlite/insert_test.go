package sqlite

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

// randomEvents returns n events over a few sessions with the variety the
// summary and tags depend on: identities that appear late or change,
// session.start and session.end, times out of order, destinations,
// Kubernetes resources and verdicts.
func randomEvents(r *rand.Rand, n int) []*event.Event {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	users := []string{"", "", "alice", "bob"}
	out := make([]*event.Event, n)
	for i := range out {
		session := fmt.Sprintf("s%d", r.IntN(4))
		at := t0.Add(time.Duration(r.IntN(10000)) * time.Millisecond)
		var e *event.Event
		switch r.IntN(10) {
		case 0:
			e = event.New(session, event.KindSessionStart, at)
			e.SessionStart = &event.SessionStart{Origin: []string{"pod", "run"}[r.IntN(2)]}
		case 1:
			e = event.New(session, event.KindSessionEnd, at)
			e.SessionEnd = &event.SessionEnd{}
		case 2:
			e = event.New(session, event.KindK8sRequest, at)
			e.K8sRequest = &event.K8sRequest{Verb: "get", Resource: []string{"pods", "secrets"}[r.IntN(2)]}
		default:
			e = event.New(session, event.KindHTTPRequest, at)
			e.HTTPRequest = &event.HTTPRequest{Proto: "HTTP/1.1", Method: "GET", URL: fmt.Sprintf("/%d", i)}
			e.Dest = &event.Destination{Addr: fmt.Sprintf("10.0.0.%d:80", r.IntN(3)), Host: []string{"", "example.com"}[r.IntN(2)]}
		}
		e.Seq = uint64(i + 1)
		if u := users[r.IntN(len(users))]; u != "" {
			e.Identity = &event.Identity{User: u, Namespace: "ns-" + u, Pod: "pod-" + u, ServiceAccount: "sa-" + u}
		}
		if r.IntN(3) == 0 {
			e.Verdict = []string{"allow", "deny"}[r.IntN(2)]
		}
		out[i] = e
	}
	return out
}

// TestBatchedAppendMatchesOneByOne appends the same events, with
// redeliveries of stored ones and repeats inside batches, once in random
// batches (multi-row inserts, their one-by-one fallback, tail-only session
// updates) and once an event at a time. Both stores must give every event
// the same link and every session the same summary and tags, and each
// store's database must agree with its cache.
func TestBatchedAppendMatchesOneByOne(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 1))
			events := randomEvents(r, 300)
			batched, single := openTest(t, ""), openTest(t, "")
			defer batched.Close()
			defer single.Close()

			links := map[string]event.Chain{}
			var sent []*event.Event
			for len(events) > 0 {
				n := min(len(events), 1+r.IntN(80))
				b := slices.Clone(events[:n])
				events = events[n:]
				for range r.IntN(4) {
					// A redelivered event, stored earlier or earlier in this batch.
					if pool := append(sent, b...); len(pool) > 0 {
						b = slices.Insert(b, r.IntN(len(b)+1), copyEvent(pool[r.IntN(len(pool))]))
					}
				}
				sent = append(sent, b...)
				res := mustAppend(t, batched, b...)
				var stored int
				for _, e := range b {
					one := copyEvent(e)
					if mustAppend(t, single, one).Stored == 1 {
						stored++
						links[e.ID] = *one.Chain
					}
				}
				if res.Stored != stored || res.Stored+res.Duplicates != len(b) {
					t.Fatalf("batch of %d: %+v, one by one %d stored", len(b), res, stored)
				}
			}
			for _, s := range []*Store{batched, single} {
				for id, cached := range s.heads {
					if got := readSummary(t, s, id); got != cached {
						t.Fatalf("session %s: database has %+v, cache %+v", id, got, cached)
					}
				}
			}
			for _, id := range []string{"s0", "s1", "s2", "s3"} {
				a, errA := batched.Session(t.Context(), id)
				b, errB := single.Session(t.Context(), id)
				if errA != nil || errB != nil {
					t.Fatalf("Session(%s): %v, %v", id, errA, errB)
				}
				if fmt.Sprint(a) != fmt.Sprint(b) {
					t.Fatalf("session %s:\nbatched    %+v\none by one %+v", id, a, b)
				}
				n := 0
				if err := batched.Events(t.Context(), id, 0, func(e *event.Event) error {
					n++
					if want := links[e.ID]; *e.Chain != want {
						t.Fatalf("event %s: batched link %+v, one by one %+v", e.ID, *e.Chain, want)
					}
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				verifyOK(t, batched, id, uint64(n))
			}
		})
	}
}

func copyEvent(e *event.Event) *event.Event {
	c := *e
	c.Chain = nil
	return &c
}

// readSummary reads a session's row as Append's cache holds it.
func readSummary(t *testing.T, s *Store, id string) summary {
	t.Helper()
	var m summary
	var events int64
	if err := s.rdb.QueryRowContext(t.Context(), `SELECT user_name, namespace, pod, service_account, origin, start_seen,
			started, last_event, ended, events, head FROM sessions WHERE id = ?`, id).Scan(&m.user, &m.namespace, &m.pod,
		&m.serviceAccount, &m.origin, &m.startSeen, &m.started, &m.last, &m.ended, &events, &m.head); err != nil {
		t.Fatalf("read session %s: %v", id, err)
	}
	m.events = uint64(events)
	return m
}

// TestConflictInBatchIsAnError checks that a row conflicting on its chain
// position (a database changed behind the store's back) fails the batch
// instead of being skipped like a duplicate id.
func TestConflictInBatchIsAnError(t *testing.T) {
	s := openTest(t, "")
	defer s.Close()
	mustAppend(t, s, batch("c", 4)...)
	// Another writer moved the head on: the cache does not know.
	if _, err := s.wdb.ExecContext(t.Context(), `INSERT INTO events (session, idx, id, seq, time, kind, canonical, prev, hash)
		VALUES ('c', 5, 'OTHER', 0, 0, 'x', x'', '', '')`); err != nil {
		t.Fatal(err)
	}
	b := batch("c", 8)
	for _, e := range b {
		e.ID = event.NewID(e.Time)
	}
	if _, err := s.Append(t.Context(), b); err == nil {
		t.Fatal("Append over a foreign row succeeded")
	}
	if ss, err := s.Session(t.Context(), "c"); err != nil || ss.Events != 4 {
		t.Fatalf("session after the failed batch: %+v, %v", ss, err)
	}
}

// TestBucketFor checks that batches are cut into the prepared row counts.
func TestBucketFor(t *testing.T) {
	for n := 1; n <= 100; n++ {
		left, stmts := n, 0
		for left > 0 {
			k := bucketFor(left)
			size := 1
			if k >= 0 {
				size = insertBuckets[k]
			}
			if size > left {
				t.Fatalf("n=%d: bucket of %d for %d rows", n, size, left)
			}
			left -= size
			stmts++
		}
		if stmts > n/insertBuckets[0]+len(insertBuckets)+1 {
			t.Fatalf("n=%d takes %d statements", n, stmts)
		}
	}
}
