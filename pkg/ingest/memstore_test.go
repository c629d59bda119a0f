package ingest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/store"
)

// memStore is a small in-memory store.Store for tests that do not need
// SQLite: it hash-chains events per session and de-duplicates by id.
type memStore struct {
	mu       sync.Mutex
	ids      map[string]bool
	sessions map[string][]*event.Event
	blobs    map[string][]byte
	// fail, when set, is called before each write; a non-nil result fails it.
	fail func() error
}

var _ store.Store = (*memStore)(nil)

func newMemStore() *memStore {
	return &memStore{ids: map[string]bool{}, sessions: map[string][]*event.Event{}, blobs: map[string][]byte{}}
}

func chainHash(prev string, e *event.Event) (string, error) {
	b, err := event.Canonical(e)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	h.Write([]byte(prev))
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil)), nil
}

func (s *memStore) Append(_ context.Context, events []*event.Event) (store.AppendResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		if err := s.fail(); err != nil {
			return store.AppendResult{}, err
		}
	}
	var res store.AppendResult
	for _, e := range events {
		if s.ids[e.ID] {
			res.Duplicates++
			continue
		}
		evs := s.sessions[e.Session]
		prev := ""
		if len(evs) > 0 {
			prev = evs[len(evs)-1].Chain.Hash
		}
		c := *e
		c.Chain = nil
		h, err := chainHash(prev, &c)
		if err != nil {
			return store.AppendResult{}, err
		}
		c.Chain = &event.Chain{Index: uint64(len(evs) + 1), Prev: prev, Hash: h}
		e.Chain = c.Chain
		s.sessions[e.Session] = append(evs, &c)
		s.ids[e.ID] = true
		res.Stored++
	}
	return res, nil
}

func (s *memStore) PutBlobs(_ context.Context, blobs []store.Blob) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range blobs {
		s.blobs[b.Ref] = b.Data
	}
	return nil
}

func (s *memStore) Blob(_ context.Context, ref string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.blobs[ref]
	if !ok {
		return nil, store.ErrNotFound
	}
	return b, nil
}

func (s *memStore) BlobInSession(_ context.Context, session, ref string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.sessions[session] {
		b, err := event.Canonical(e)
		if err != nil {
			return false, err
		}
		if bytes.Contains(b, []byte(`"`+ref+`"`)) {
			return true, nil
		}
	}
	return false, nil
}

func (s *memStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ids)
}

func (s *memStore) Sessions(context.Context, store.SessionQuery) (store.SessionPage, error) {
	return store.SessionPage{}, nil
}

func (s *memStore) Session(_ context.Context, id string) (store.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	evs, ok := s.sessions[id]
	if !ok {
		return store.Session{}, store.ErrNotFound
	}
	return store.Session{ID: id, Events: uint64(len(evs)), Head: evs[len(evs)-1].Chain.Hash}, nil
}

func (s *memStore) Events(_ context.Context, session string, after uint64, fn func(*event.Event) error) error {
	s.mu.Lock()
	evs, ok := s.sessions[session]
	evs = append([]*event.Event(nil), evs...)
	s.mu.Unlock()
	if !ok {
		return store.ErrNotFound
	}
	for _, e := range evs {
		if e.Chain.Index <= after {
			continue
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

func (s *memStore) Verify(ctx context.Context, session string) (store.VerifyResult, error) {
	res := store.VerifyResult{Session: session, OK: true}
	prev := ""
	err := s.Events(ctx, session, 0, func(e *event.Event) error {
		res.Events++
		c := *e
		c.Chain = nil
		h, err := chainHash(prev, &c)
		if err != nil {
			return err
		}
		if e.Chain.Prev != prev || e.Chain.Hash != h || e.Chain.Index != res.Events {
			res.OK = false
			res.FirstBad = &store.BadLink{Index: e.Chain.Index, EventID: e.ID, Reason: fmt.Sprintf("hash %s want %s", e.Chain.Hash, h)}
			return fmt.Errorf("bad link")
		}
		prev = h
		res.Head = h
		return nil
	})
	if err != nil && res.OK {
		return res, err
	}
	return res, nil
}

func (s *memStore) Ping(context.Context) error { return nil }
func (s *memStore) Close() error               { return nil }
