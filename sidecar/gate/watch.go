package gate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chaperone-dev/chaperone/pkg/approvals"
	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/policy"
)

// CacheFile is the name of the last good policy bundle kept in the spool
// directory.
const CacheFile = "policy.json"

// NATSAsker asks for approvals over the approvals protocol.
type NATSAsker struct{ Conn *nats.Conn }

// Ask implements Asker with approvals.Ask.
func (a NATSAsker) Ask(ctx context.Context, req approvals.Request) (approvals.Decision, error) {
	return approvals.Ask(ctx, a.Conn, req) //nolint:wrapcheck // approvals' errors say enough
}

// WatchOptions configure Watch.
type WatchOptions struct {
	// Conn is the sidecar's NATS connection.
	Conn *nats.Conn
	// Session is the session whose key (policy.SessionKey) overrides the
	// cluster's set.
	Session string
	// CacheDir keeps the last good bundle (CacheFile); empty keeps none.
	CacheDir string
	// Loaded is called with each change of the policy in force, to be
	// recorded as a policy.loaded event.
	Loaded func(*event.PolicyLoaded)
	// Retry is how long to wait before watching again after the bucket was
	// unreachable (default 2s).
	Retry time.Duration
}

// LoadCache puts the cached bundle in force, if there is one, and reports
// whether it did. A cache that does not decode is removed.
func (g *Gate) LoadCache(o WatchOptions) bool {
	if o.CacheDir == "" {
		return false
	}
	path := filepath.Join(o.CacheDir, CacheFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	set, err := policy.Unmarshal(b)
	if err != nil {
		g.log.Warn("cached policy refused", keyErr, err)
		_ = os.Remove(path)
		return false
	}
	ev := g.Load(set, SourceCache)
	if o.Loaded != nil {
		o.Loaded(ev)
	}
	return true
}

// Watch keeps the policy in force equal to the server's: the session's
// own key when it exists, else the cluster's. It returns when ctx ends.
// While the server is away the last good policy stays; a bundle that
// does not decode or compile is refused (recorded with its error) and
// the last good one stays too. first is closed once the bucket was read
// (or never, when it stays unreachable).
func (g *Gate) Watch(ctx context.Context, o WatchOptions, first chan<- struct{}) {
	if o.Retry <= 0 {
		o.Retry = 2 * time.Second
	}
	w := &watcher{g: g, o: o, first: first}
	for {
		err := w.run(ctx)
		if ctx.Err() != nil {
			return
		}
		g.log.Warn("policy watch", keyErr, err, "retry_in", o.Retry)
		t := time.NewTimer(o.Retry)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

type watcher struct {
	g     *Gate
	o     WatchOptions
	first chan<- struct{}
	// cluster and session are the latest values of the two keys (nil:
	// absent); applied is the bundle in force from the bucket.
	cluster, session []byte
	applied          []byte
	seen             bool
}

func (w *watcher) run(ctx context.Context) error {
	js, err := jetstream.New(w.o.Conn)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	kv, err := js.KeyValue(ctx, policy.Bucket)
	if err != nil {
		return fmt.Errorf("policy bucket: %w", err)
	}
	skey, err := policy.SessionKey(w.o.Session)
	if err != nil {
		return err
	}
	kw, err := kv.WatchFiltered(ctx, []string{policy.KeyCluster, skey})
	if err != nil {
		return fmt.Errorf("watch policy: %w", err)
	}
	defer func() { _ = kw.Stop() }()
	initial := true
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-kw.Updates():
			if !ok {
				return errors.New("policy watch ended")
			}
			if e == nil { // every current value was delivered
				initial = false
				w.apply()
				continue
			}
			var v []byte
			if e.Operation() == jetstream.KeyValuePut {
				v = e.Value()
			}
			if e.Key() == skey {
				w.session = v
			} else {
				w.cluster = v
			}
			if !initial {
				w.apply()
			}
		}
	}
}

// apply puts the effective bundle in force if it changed.
func (w *watcher) apply() {
	defer func() {
		if !w.seen {
			w.seen = true
			if w.first != nil {
				close(w.first)
			}
		}
	}()
	b, source := w.cluster, SourceServer
	if w.session != nil {
		b, source = w.session, SourceSession
	}
	if w.seen && bytes.Equal(b, w.applied) {
		return
	}
	g := w.g
	if b == nil {
		if !w.seen && g.Hash() == "" {
			w.applied = nil
			return // nothing before, nothing now: no event
		}
		w.applied = nil
		w.store(nil)
		w.loaded(g.Load(nil, SourceNone))
		return
	}
	set, err := policy.Unmarshal(b)
	if err != nil {
		// Never shipped by a correct server; keep deciding with what we have.
		g.log.Error("distributed policy refused", keyErr, err)
		w.loaded(&event.PolicyLoaded{Hash: g.Hash(), Source: source, Error: err.Error()})
		return
	}
	w.applied = b
	if set.Hash() == g.Hash() && g.cur.Load().source == source {
		return
	}
	w.store(b)
	w.loaded(g.Load(set, source))
}

func (w *watcher) loaded(ev *event.PolicyLoaded) {
	if w.o.Loaded != nil {
		w.o.Loaded(ev)
	}
}

// store keeps b as the last good bundle (nil: none), atomically.
func (w *watcher) store(b []byte) {
	if w.o.CacheDir == "" {
		return
	}
	path := filepath.Join(w.o.CacheDir, CacheFile)
	if b == nil {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			w.g.log.Warn("remove policy cache", keyErr, err)
		}
		return
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		w.g.log.Warn("write policy cache", keyErr, err)
		return
	}
	if err := os.Rename(tmp, path); err != nil {
		w.g.log.Warn("write policy cache", keyErr, err)
	}
}
