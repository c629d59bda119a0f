package api

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/chain"
	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/store"
)

// memStore is a small in-memory store.Store for handler tests: real hash
// chain, real filters and cursors, no persistence.
type memStore struct {
	mu       sync.Mutex
	sessions map[string]*memSession
	ids      map[string]bool
	blobs    map[string][]byte
	// panicOn makes Session panic for this id, to test recovery.
	panicOn string
}

type memSession struct {
	sum       store.Session
	events    []*event.Event
	canonical [][]byte
}

var _ store.Store = (*memStore)(nil)

func newMemStore() *memStore {
	return &memStore{sessions: map[string]*memSession{}, ids: map[string]bool{}, blobs: map[string][]byte{}}
}

func (m *memStore) Append(ctx context.Context, events []*event.Event) (store.AppendResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var res store.AppendResult
	for _, e := range events {
		if m.ids[e.ID] {
			res.Duplicates++
			continue
		}
		s := m.sessions[e.Session]
		if s == nil {
			s = &memSession{sum: store.Session{ID: e.Session, Started: e.Time}}
			m.sessions[e.Session] = s
		}
		c := *e
		c.Chain = nil
		canon, err := event.Canonical(&c)
		if err != nil {
			return res, err
		}
		c.Chain = &event.Chain{Index: uint64(len(s.events)) + 1, Prev: s.sum.Head, Hash: chain.Link(s.sum.Head, canon)}
		e.Chain = c.Chain
		s.events = append(s.events, &c)
		s.canonical = append(s.canonical, canon)
		m.ids[e.ID] = true
		res.Stored++

		sum := &s.sum
		sum.Events++
		sum.Head = c.Chain.Hash
		if e.Time.Before(sum.Started) {
			sum.Started = e.Time
		}
		if e.Time.After(sum.LastEvent) {
			sum.LastEvent = e.Time
		}
		if id := e.Identity; id != nil {
			sum.User = cmp.Or(sum.User, id.User)
			sum.Namespace = cmp.Or(sum.Namespace, id.Namespace)
			sum.Pod = cmp.Or(sum.Pod, id.Pod)
			sum.ServiceAccount = cmp.Or(sum.ServiceAccount, id.ServiceAccount)
		}
		if e.SessionStart != nil {
			sum.Origin = e.SessionStart.Origin
		}
		if e.SessionEnd != nil {
			sum.Ended = true
		}
		if e.Dest != nil {
			sum.Resources = addUnique(sum.Resources, cmp.Or(e.Dest.Host, e.Dest.Addr))
		}
		if k := e.K8sRequest; k != nil && k.Resource != "" {
			sum.Resources = addUnique(sum.Resources, "k8s:"+k.Resource)
		}
		if e.Verdict != "" {
			sum.Verdicts = addUnique(sum.Verdicts, e.Verdict)
		}
	}
	return res, nil
}

func addUnique(list []string, v string) []string {
	if slices.Contains(list, v) {
		return list
	}
	return append(list, v)
}

func (m *memStore) PutBlobs(ctx context.Context, blobs []store.Blob) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, b := range blobs {
		if err := store.CheckBlob(b); err != nil {
			return err
		}
		m.blobs[b.Ref] = b.Data
	}
	return nil
}

func (m *memStore) Blob(ctx context.Context, ref string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.blobs[ref]
	if !ok {
		return nil, fmt.Errorf("blob %s: %w", ref, store.ErrNotFound)
	}
	return b, nil
}

func (m *memStore) BlobInSession(ctx context.Context, session, ref string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sessions[session]
	if s == nil {
		return false, nil
	}
	for _, c := range s.canonical {
		if bytes.Contains(c, []byte(`"`+ref+`"`)) {
			return true, nil
		}
	}
	return false, nil
}

func (m *memStore) Sessions(ctx context.Context, q store.SessionQuery) (store.SessionPage, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var after *store.Cursor
	if q.Cursor != "" {
		c, err := store.ParseCursor(q.Cursor)
		if err != nil {
			return store.SessionPage{}, err
		}
		after = &c
	}
	var all []store.Session
	for _, s := range m.sessions {
		sum := s.sum
		switch {
		case q.User != "" && sum.User != q.User,
			q.Namespace != "" && sum.Namespace != q.Namespace,
			q.Pod != "" && sum.Pod != q.Pod,
			!q.Since.IsZero() && sum.Started.Before(q.Since),
			!q.Until.IsZero() && !sum.Started.Before(q.Until),
			q.Resource != "" && !slices.Contains(sum.Resources, q.Resource),
			q.Verdict != "" && !slices.Contains(sum.Verdicts, q.Verdict):
			continue
		}
		if after != nil && !sortsAfter(sum, *after) {
			continue
		}
		all = append(all, sum)
	}
	slices.SortFunc(all, func(a, b store.Session) int {
		if c := b.Started.Compare(a.Started); c != 0 {
			return c
		}
		return cmp.Compare(b.ID, a.ID)
	})
	page := store.SessionPage{Sessions: all}
	if n := q.PageSize(); len(all) > n {
		page.Sessions = all[:n]
		last := all[n-1]
		page.Next = store.Cursor{Started: last.Started, ID: last.ID}.String()
	}
	return page, nil
}

// sortsAfter reports whether s comes after the cursor in newest-first order.
func sortsAfter(s store.Session, c store.Cursor) bool {
	if !s.Started.Equal(c.Started) {
		return s.Started.Before(c.Started)
	}
	return s.ID < c.ID
}

func (m *memStore) Session(ctx context.Context, id string) (store.Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.panicOn != "" && id == m.panicOn {
		panic("memstore: asked to panic")
	}
	s, ok := m.sessions[id]
	if !ok {
		return store.Session{}, fmt.Errorf("session %s: %w", id, store.ErrNotFound)
	}
	return s.sum, nil
}

func (m *memStore) Events(ctx context.Context, session string, after uint64, fn func(*event.Event) error) error {
	m.mu.Lock()
	s, ok := m.sessions[session]
	var evs []*event.Event
	if ok {
		evs = slices.Clone(s.events)
	}
	m.mu.Unlock()
	if !ok {
		return fmt.Errorf("session %s: %w", session, store.ErrNotFound)
	}
	for _, e := range evs {
		if e.Chain.Index <= after {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		c := *e
		if err := fn(&c); err != nil {
			return err
		}
	}
	return nil
}

func (m *memStore) Verify(ctx context.Context, session string) (store.VerifyResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[session]
	if !ok {
		return store.VerifyResult{}, fmt.Errorf("session %s: %w", session, store.ErrNotFound)
	}
	var v chain.Verifier
	for i, e := range s.events {
		v.Add(chain.Record{Index: e.Chain.Index, ID: e.ID, Prev: e.Chain.Prev, Hash: e.Chain.Hash, Canonical: s.canonical[i]})
	}
	v.End(s.sum.Events, s.sum.Head)
	res := store.VerifyResult{Session: session, OK: v.Break() == nil, Events: v.Events(), Head: v.Head()}
	if b := v.Break(); b != nil {
		res.FirstBad = &store.BadLink{Index: b.Index, EventID: b.ID, Reason: b.Reason}
	}
	return res, nil
}

// tamper changes the stored canonical bytes of the session's event at index.
func (m *memStore) tamper(session string, index int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sessions[session]
	s.canonical[index-1] = append([]byte(nil), s.canonical[index-1]...)
	s.canonical[index-1][len(s.canonical[index-1])-2] ^= 1
}

func (m *memStore) Ping(ctx context.Context) error { return nil }
func (m *memStore) Close() error                   { return nil }

// seedTime is the fixed "now" of handler tests.
var seedTime = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
