package proxy

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

// memRecorder is an in-memory Recorder: it keeps events and blobs in order
// and wakes waiters on each.
type memRecorder struct {
	mu        sync.Mutex
	events    []*event.Event
	blobs     map[string][]byte
	log       []string // "blob:<ref>" or the event kind, in arrival order
	accepting error
	changed   chan struct{}
}

func newMemRecorder() *memRecorder {
	return &memRecorder{blobs: map[string][]byte{}, changed: make(chan struct{}, 1)}
}

func (r *memRecorder) Publish(_ context.Context, e *event.Event) error {
	r.mu.Lock()
	e.Session = "test-session"
	e.Seq = uint64(len(r.events) + 1)
	r.events = append(r.events, e)
	r.log = append(r.log, string(e.Kind))
	r.mu.Unlock()
	r.wake()
	return e.Validate()
}

func (r *memRecorder) PublishBlob(_ context.Context, ref string, data []byte) error {
	r.mu.Lock()
	r.blobs[ref] = append([]byte(nil), data...)
	r.log = append(r.log, "blob:"+ref)
	r.mu.Unlock()
	r.wake()
	return nil
}

func (r *memRecorder) Accepting() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.accepting
}

func (r *memRecorder) setAccepting(err error) {
	r.mu.Lock()
	r.accepting = err
	r.mu.Unlock()
}

func (r *memRecorder) wake() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// waitFor waits until cond holds for the events so far and returns them.
func (r *memRecorder) waitFor(t *testing.T, what string, cond func([]*event.Event) bool) []*event.Event {
	t.Helper()
	timeout := time.NewTimer(10 * time.Second) // a safety net, not a timing assertion
	defer timeout.Stop()
	for {
		r.mu.Lock()
		evs := append([]*event.Event(nil), r.events...)
		r.mu.Unlock()
		if cond(evs) {
			return evs
		}
		select {
		case <-r.changed:
		case <-timeout.C:
			t.Fatalf("timed out waiting for %s; have %d events", what, len(evs))
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		}
	}
}

// closes waits for n conn.close events.
func (r *memRecorder) closes(t *testing.T, n int) []*event.Event {
	t.Helper()
	return r.waitFor(t, "conn.close", func(evs []*event.Event) bool {
		return len(ofKind(evs, event.KindConnClose)) >= n
	})
}

func ofKind(evs []*event.Event, k event.Kind) []*event.Event {
	var out []*event.Event
	for _, e := range evs {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}

// startProxy runs a Proxy on loopback whose connections all "originally"
// went to target. It returns the proxy's address.
func startProxy(t testing.TB, rec Recorder, target string, mod func(*Options)) (*Proxy, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{
		// A loaded test machine must not make a client look silent: the
		// tests that count upstream connections rely on being heard.
		clientFirstWait: 10 * time.Second,
		Recorder:        rec,
		Identity:        &event.Identity{Pod: "agent-0", Namespace: "ns"},
		OriginalDst: func(*net.TCPConn) (netip.AddrPort, error) {
			return netip.ParseAddrPort(target)
		},
	}
	if mod != nil {
		mod(&opts)
	}
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return p, ln.Addr().String()
}
