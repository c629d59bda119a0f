package sqlite

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/store"
)

// summary is the part of a session row Append maintains. Append works on
// copies and writes them back to the cache only after its commit, so a
// failed batch leaves the cache as it was.
type summary struct {
	user, namespace, pod, serviceAccount, origin string
	// startSeen is set once a session.start event set the identity; before
	// that each field is taken from the first event that carries it.
	startSeen bool
	started   int64
	last      int64
	ended     bool
	events    uint64
	head      string
}

// sameIndexed reports whether m and o agree on every column an index of
// sessions covers (and on those set only with them).
func (m *summary) sameIndexed(o *summary) bool {
	return m.user == o.user && m.namespace == o.namespace && m.pod == o.pod && m.serviceAccount == o.serviceAccount &&
		m.origin == o.origin && m.startSeen == o.startSeen && m.started == o.started
}

// apply folds a newly stored event into the summary.
func (m *summary) apply(e *event.Event, index uint64, hash string) {
	t := store.UnixNano(e.Time)
	if m.events == 0 || t < m.started {
		m.started = t
	}
	if m.events == 0 || t > m.last {
		m.last = t
	}
	m.events = index
	m.head = hash
	if e.Kind == event.KindSessionEnd {
		m.ended = true
	}
	fromStart := e.Kind == event.KindSessionStart && !m.startSeen
	if fromStart {
		m.startSeen = true
		m.origin = e.SessionStart.Origin
	}
	if id := e.Identity; id != nil {
		take := func(dst *string, v string) {
			if v != "" && (fromStart || *dst == "") {
				*dst = v
			}
		}
		take(&m.user, id.User)
		take(&m.namespace, id.Namespace)
		take(&m.pod, id.Pod)
		take(&m.serviceAccount, id.ServiceAccount)
	}
}

// Tag kinds in session_tags.
const (
	tagResource = "resource"
	tagVerdict  = "verdict"
)

type tag struct{ session, kind, value string }

// tags returns what e adds to its session's resource and verdict filters.
func tags(e *event.Event, add func(tag)) {
	if d := e.Dest; d != nil {
		if d.Host != "" {
			add(tag{e.Session, tagResource, d.Host})
		} else if d.Addr != "" {
			add(tag{e.Session, tagResource, d.Addr})
		}
	}
	if k := e.K8sRequest; k != nil && k.Resource != "" {
		add(tag{e.Session, tagResource, "k8s:" + k.Resource})
	}
	if e.Verdict != "" {
		add(tag{e.Session, tagVerdict, e.Verdict})
	}
}

// Append stores a batch in one transaction; see store.Store.
func (s *Store) Append(ctx context.Context, events []*event.Event) (store.AppendResult, error) {
	var res store.AppendResult
	if s.closed.Load() {
		return res, ErrClosed
	}
	if len(events) == 0 {
		return res, nil
	}
	start := time.Now()
	canon, err := encodeAll(events)
	if err != nil {
		return res, fmt.Errorf("append: %w", err)
	}

	s.appendMu.Lock()
	defer s.appendMu.Unlock()
	if s.closed.Load() {
		return res, ErrClosed
	}
	links, touched, err := s.appendTx(ctx, events, canon, &res)
	if err != nil {
		s.m.failed.Inc()
		return store.AppendResult{}, err
	}
	// Committed: publish the new heads and links.
	if len(s.heads)+len(touched) > s.cacheSessions {
		for id := range s.heads {
			if len(s.heads)+len(touched) <= s.cacheSessions {
				break
			}
			delete(s.heads, id)
		}
	}
	for id, st := range touched {
		s.heads[id] = st.cur
	}
	for i, l := range links {
		if l != nil {
			events[i].Chain = l
		}
	}
	s.m.stored.Add(float64(res.Stored))
	s.m.duplicates.Add(float64(res.Duplicates))
	s.m.batch.Observe(time.Since(start).Seconds())
	return res, nil
}

// parallelMin is the batch size from which encodeAll uses every CPU.
const parallelMin = 64

// encodeAll validates events and returns their canonical bytes. This is
// about a third of Append's CPU time and needs no lock, so large batches are
// split over all CPUs while the writer connection waits.
func encodeAll(events []*event.Event) ([][]byte, error) {
	canon := make([][]byte, len(events))
	encode := func(lo, hi int) error {
		for i := lo; i < hi; i++ {
			e := events[i]
			if e == nil {
				return fmt.Errorf("%w: nil event at %d", event.ErrInvalid, i)
			}
			if err := e.Validate(); err != nil {
				return err
			}
			c, err := event.Canonical(e)
			if err != nil {
				return err
			}
			canon[i] = c
		}
		return nil
	}
	workers := min(runtime.GOMAXPROCS(0), len(events)/parallelMin*2)
	if workers <= 1 {
		return canon, encode(0, len(events))
	}
	errs := make([]error, workers)
	var wg sync.WaitGroup
	per := (len(events) + workers - 1) / workers
	for w := range workers {
		lo, hi := w*per, min((w+1)*per, len(events))
		wg.Go(func() { errs[w] = encode(lo, hi) })
	}
	wg.Wait()
	// The first error in batch order, whichever worker found it.
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return canon, nil
}
