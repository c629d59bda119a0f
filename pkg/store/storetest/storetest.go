package storetest

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/store"
)

// Options configures Run.
type Options struct {
	// Tamper, when set, corrupts the stored copy of the event at chain index
	// index of session in s (for example by editing its canonical bytes),
	// through the backend's own access to its storage. The suite then
	// requires Verify to report exactly that event. Without Tamper the
	// tamper check is skipped, and says so.
	Tamper func(t *testing.T, s store.Store, session string, index uint64)
}

// Run runs the conformance suite. open must return a new, empty store for
// each call; Run closes it when the subtest ends.
func Run(t *testing.T, open func(t *testing.T) store.Store, opts Options) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"AppendAndEvents", testAppendAndEvents},
		{"AppendIdempotent", testAppendIdempotent},
		{"AppendInvalidBatch", testAppendInvalidBatch},
		{"ChainAcrossBatchesAndSessions", testChainAcrossBatches},
		{"ConcurrentAppend", testConcurrentAppend},
		{"EventsAfterAndStop", testEventsAfterAndStop},
		{"Summary", testSummary},
		{"SessionFilters", testSessionFilters},
		{"SessionPaging", testSessionPaging},
		{"SessionLimits", testSessionLimits},
		{"BadCursor", testBadCursor},
		{"NotFound", testNotFound},
		{"Blobs", testBlobs},
		{"BlobInSession", testBlobInSession},
		{"VerifyOK", testVerifyOK},
		{"Tamper", func(t *testing.T, s store.Store) { testTamper(t, s, opts.Tamper) }},
		{"Ping", func(t *testing.T, s store.Store) {
			if err := s.Ping(t.Context()); err != nil {
				t.Fatalf("Ping: %v", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tt.fn(t, s)
		})
	}
}

// base is the suite's clock origin: whole microseconds, UTC.
var base = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// at returns base plus n seconds.
func at(n int) time.Time { return base.Add(time.Duration(n) * time.Second) }

var seq atomic.Uint64

// ev returns a valid event of kind with the payload that kind needs, then
// applies mods.
func ev(session string, kind event.Kind, t time.Time, mods ...func(*event.Event)) *event.Event {
	e := event.New(session, kind, t)
	e.Seq = seq.Add(1)
	e.Source = event.SourceSidecar
	switch kind {
	case event.KindSessionStart:
		e.SessionStart = &event.SessionStart{Origin: "pod"}
	case event.KindSessionEnd:
		e.SessionEnd = &event.SessionEnd{Reason: "pod deleted"}
	case event.KindConnOpen:
		e.ConnOpen = &event.ConnOpen{Client: "10.0.0.2:40000"}
	case event.KindHTTPRequest:
		e.HTTPRequest = &event.HTTPRequest{Proto: "HTTP/1.1", Method: "GET", URL: "/"}
	case event.KindK8sRequest:
		e.K8sRequest = &event.K8sRequest{Verb: "get"}
	case event.KindPolicyDecision:
		e.PolicyDecision = &event.PolicyDecision{Action: "Allow"}
	default:
		panic(fmt.Sprintf("storetest: no payload for kind %s", kind))
	}
	for _, m := range mods {
		m(e)
	}
	return e
}

func withIdentity(id event.Identity) func(*event.Event) {
	return func(e *event.Event) { e.Identity = &id }
}

func withDest(addr, host string) func(*event.Event) {
	return func(e *event.Event) { e.Dest = &event.Destination{Addr: addr, Host: host, Protocol: "tcp"} }
}

func withVerdict(v string) func(*event.Event) {
	return func(e *event.Event) { e.Verdict = v }
}

func withResource(r string) func(*event.Event) {
	return func(e *event.Event) { e.K8sRequest.Resource = r }
}

func withOrigin(o string) func(*event.Event) {
	return func(e *event.Event) { e.SessionStart.Origin = o }
}

// appendOK appends events and requires them all stored.
func appendOK(t *testing.T, s store.Store, events ...*event.Event) {
	t.Helper()
	res, err := s.Append(t.Context(), events)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	if res.Stored != len(events) || res.Duplicates != 0 {
		t.Fatalf("Append = %+v, want %d stored", res, len(events))
	}
}

// events returns all stored events of a session.
func events(t *testing.T, s store.Store, session string, after uint64) []*event.Event {
	t.Helper()
	var out []*event.Event
	if err := s.Events(t.Context(), session, after, func(e *event.Event) error {
		out = append(out, e)
		return nil
	}); err != nil {
		t.Fatalf("Events(%s, %d): %v", session, after, err)
	}
	return out
}

func canonical(t *testing.T, e *event.Event) string {
	t.Helper()
	b, err := event.Canonical(e)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
