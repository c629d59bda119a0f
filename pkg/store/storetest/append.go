package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/chaperone-dev/chaperone/pkg/chain"
	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/store"
)

// checkChain requires the session's stored events to be exactly want (by
// canonical bytes, in order) with a valid chain from index 1, and the
// session's summary and Verify to agree on count and head.
func checkChain(t *testing.T, s store.Store, session string, want []*event.Event) {
	t.Helper()
	got := events(t, s, session, 0)
	if len(got) != len(want) {
		t.Fatalf("session %s has %d events, want %d", session, len(got), len(want))
	}
	prev := ""
	for i, e := range got {
		if c, w := canonical(t, e), canonical(t, want[i]); c != w {
			t.Fatalf("event %d of %s:\n got %s\nwant %s", i+1, session, c, w)
		}
		if e.Chain == nil {
			t.Fatalf("event %d of %s has no chain link", i+1, session)
		}
		link := chain.Link(prev, []byte(canonical(t, e)))
		if e.Chain.Index != uint64(i+1) || e.Chain.Prev != prev || e.Chain.Hash != link {
			t.Fatalf("event %d of %s: chain %+v, want index %d prev %q hash %s", i+1, session, *e.Chain, i+1, prev, link)
		}
		if w := want[i].Chain; w != nil && *w != *e.Chain {
			t.Fatalf("event %d of %s: Append set chain %+v, stored %+v", i+1, session, *w, *e.Chain)
		}
		prev = e.Chain.Hash
	}
	ss, err := s.Session(t.Context(), session)
	if err != nil {
		t.Fatalf("Session(%s): %v", session, err)
	}
	if ss.Events != uint64(len(want)) || ss.Head != prev {
		t.Fatalf("session %s summary: events %d head %s, want %d %s", session, ss.Events, ss.Head, len(want), prev)
	}
	vr, err := s.Verify(t.Context(), session)
	if err != nil {
		t.Fatalf("Verify(%s): %v", session, err)
	}
	if !vr.OK || vr.FirstBad != nil || vr.Events != uint64(len(want)) || vr.Head != prev || vr.Session != session {
		t.Fatalf("Verify(%s) = %+v, want ok with %d events, head %s", session, vr, len(want), prev)
	}
}

func testAppendAndEvents(t *testing.T, s store.Store) {
	batch := []*event.Event{
		ev("a", event.KindSessionStart, at(0)),
		ev("a", event.KindConnOpen, at(1), withDest("10.1.2.3:443", "example.com")),
		ev("a", event.KindHTTPRequest, at(2)),
		ev("a", event.KindSessionEnd, at(3)),
	}
	appendOK(t, s, batch...)
	for i, e := range batch {
		if e.Chain == nil || e.Chain.Index != uint64(i+1) {
			t.Fatalf("Append did not set the chain link of event %d: %+v", i+1, e.Chain)
		}
	}
	if batch[0].Chain.Prev != "" {
		t.Fatalf("first event has prev %q", batch[0].Chain.Prev)
	}
	checkChain(t, s, "a", batch)
}

func testAppendIdempotent(t *testing.T, s store.Store) {
	ctx := t.Context()
	b1 := []*event.Event{
		ev("idem", event.KindSessionStart, at(0)),
		ev("idem", event.KindHTTPRequest, at(1)),
		ev("idem", event.KindHTTPRequest, at(2)),
	}
	appendOK(t, s, b1...)
	head := b1[2].Chain.Hash

	// The same batch again: all duplicates, chain untouched.
	again := make([]*event.Event, len(b1))
	for i, e := range b1 {
		c := *e
		c.Chain = nil
		again[i] = &c
	}
	res, err := s.Append(ctx, again)
	if err != nil {
		t.Fatalf("Append again: %v", err)
	}
	if res.Stored != 0 || res.Duplicates != 3 {
		t.Fatalf("Append again = %+v, want 3 duplicates", res)
	}
	if ss, _ := s.Session(ctx, "idem"); ss.Events != 3 || ss.Head != head {
		t.Fatalf("after duplicate batch: %d events head %s, want 3 %s", ss.Events, ss.Head, head)
	}

	// Duplicates inside one batch, mixed with new events and an old one.
	n1 := ev("idem", event.KindHTTPRequest, at(3))
	n2 := ev("idem", event.KindHTTPRequest, at(4))
	dupN1 := *n1
	res, err = s.Append(ctx, []*event.Event{n1, again[1], &dupN1, n2, n1})
	if err != nil {
		t.Fatalf("Append mixed: %v", err)
	}
	if res.Stored != 2 || res.Duplicates != 3 {
		t.Fatalf("Append mixed = %+v, want 2 stored, 3 duplicates", res)
	}
	checkChain(t, s, "idem", append(b1, n1, n2))
}

func testAppendInvalidBatch(t *testing.T, s store.Store) {
	good := ev("inv", event.KindSessionStart, at(0))
	bad := ev("inv", event.KindHTTPRequest, at(1))
	bad.HTTPRequest = nil // no payload for its kind
	if _, err := s.Append(t.Context(), []*event.Event{good, bad}); err == nil {
		t.Fatal("Append accepted an invalid event")
	}
	if _, err := s.Session(t.Context(), "inv"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a rejected batch left a session behind: %v", err)
	}
	if good.Chain != nil {
		t.Fatal("a rejected batch set a chain link")
	}
	// The store still works and the good event can be stored after all.
	appendOK(t, s, good)
	checkChain(t, s, "inv", []*event.Event{good})
}

func testChainAcrossBatches(t *testing.T, s store.Store) {
	want := map[string][]*event.Event{}
	for b := range 5 {
		var batch []*event.Event
		for i := range 7 {
			session := []string{"x", "y", "z"}[(b+i)%3]
			e := ev(session, event.KindHTTPRequest, at(b*10+i))
			batch = append(batch, e)
			want[session] = append(want[session], e)
		}
		appendOK(t, s, batch...)
	}
	for session, evs := range want {
		checkChain(t, s, session, evs)
	}
}

func testConcurrentAppend(t *testing.T, s store.Store) {
	const writers, batches, per = 4, 8, 16
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for b := range batches {
				var batch []*event.Event
				for i := range per {
					session := "shared"
					if i%2 == 1 {
						session = fmt.Sprintf("own-%d", w)
					}
					batch = append(batch, ev(session, event.KindHTTPRequest, at(b*per+i)))
				}
				res, err := s.Append(t.Context(), batch)
				if err != nil {
					errs <- err
					return
				}
				if res.Stored != per {
					errs <- fmt.Errorf("writer %d batch %d: %+v", w, b, res)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	check := func(session string, n uint64) {
		vr, err := s.Verify(t.Context(), session)
		if err != nil || !vr.OK || vr.Events != n {
			t.Fatalf("Verify(%s) = %+v, %v; want ok with %d events", session, vr, err, n)
		}
		got := events(t, s, session, 0)
		for i, e := range got {
			if e.Chain.Index != uint64(i+1) {
				t.Fatalf("%s: event %d has index %d", session, i+1, e.Chain.Index)
			}
		}
	}
	check("shared", writers*batches*per/2)
	for w := range writers {
		check(fmt.Sprintf("own-%d", w), batches*per/2)
	}
}

func testEventsAfterAndStop(t *testing.T, s store.Store) {
	var batch []*event.Event
	for i := range 10 {
		batch = append(batch, ev("after", event.KindHTTPRequest, at(i)))
	}
	appendOK(t, s, batch...)
	for _, after := range []uint64{0, 1, 5, 9, 10, 11, 1000} {
		got := events(t, s, "after", after)
		want := 0
		if after < 10 {
			want = 10 - int(after)
		}
		if len(got) != want {
			t.Fatalf("Events after %d: %d events, want %d", after, len(got), want)
		}
		for i, e := range got {
			if e.Chain.Index != after+uint64(i)+1 || e.ID != batch[after+uint64(i)].ID {
				t.Fatalf("Events after %d: event %d is %s index %d", after, i, e.ID, e.Chain.Index)
			}
		}
	}
	stop := errors.New("enough")
	calls := 0
	err := s.Events(t.Context(), "after", 0, func(*event.Event) error {
		calls++
		if calls == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 3 {
		t.Fatalf("Events with a failing callback: err %v after %d calls, want %v after 3", err, calls, stop)
	}
}

func testVerifyOK(t *testing.T, s store.Store) {
	var batch []*event.Event
	for i := range 50 {
		batch = append(batch, ev("v", event.KindHTTPRequest, at(i)))
	}
	appendOK(t, s, batch[:20]...)
	appendOK(t, s, batch[20:]...)
	checkChain(t, s, "v", batch)
}

func testTamper(t *testing.T, s store.Store, tamper func(*testing.T, store.Store, string, uint64)) {
	if tamper == nil {
		t.Skip("backend gave no Options.Tamper: tamper detection not checked")
	}
	var batch, other []*event.Event
	for i := range 12 {
		batch = append(batch, ev("tampered", event.KindHTTPRequest, at(i)))
		other = append(other, ev("intact", event.KindHTTPRequest, at(i)))
	}
	for _, half := range [][2]int{{0, 6}, {6, 12}} {
		var b []*event.Event
		b = append(b, batch[half[0]:half[1]]...)
		b = append(b, other[half[0]:half[1]]...)
		appendOK(t, s, b...)
	}

	const bad = 7
	tamper(t, s, "tampered", bad)
	vr, err := s.Verify(t.Context(), "tampered")
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if vr.OK || vr.FirstBad == nil {
		t.Fatalf("Verify after tampering = %+v, want a bad link", vr)
	}
	if vr.FirstBad.Index != bad || vr.FirstBad.EventID != batch[bad-1].ID || vr.FirstBad.Reason == "" {
		t.Fatalf("Verify names %+v, want index %d event %s with a reason", *vr.FirstBad, bad, batch[bad-1].ID)
	}
	if vr.Events != bad-1 {
		t.Fatalf("Verify counted %d good events, want %d", vr.Events, bad-1)
	}
	if vr, err := s.Verify(t.Context(), "intact"); err != nil || !vr.OK {
		t.Fatalf("tampering one session broke another: %+v, %v", vr, err)
	}
}

func testNotFound(t *testing.T, s store.Store) {
	ctx := t.Context()
	appendOK(t, s, ev("known", event.KindSessionStart, at(0)))
	if _, err := s.Session(ctx, "unknown"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Session(unknown) = %v, want ErrNotFound", err)
	}
	called := false
	if err := s.Events(ctx, "unknown", 0, func(*event.Event) error { called = true; return nil }); !errors.Is(err, store.ErrNotFound) || called {
		t.Errorf("Events(unknown) = %v (called %v), want ErrNotFound", err, called)
	}
	if _, err := s.Verify(ctx, "unknown"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Verify(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := s.Blob(ctx, store.BlobRef([]byte("never stored"))); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Blob(unknown) = %v, want ErrNotFound", err)
	}
}
