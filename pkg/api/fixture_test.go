package api

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/store"
)

// fixture sessions.
const (
	alice = "s-alice" // team-a, agent-1, 3h ago: HTTP to api.github.com, k8s pods, allow
	bob   = "s-bob"   // team-b, agent-2, 30m ago: postgres, deny, ended
	carol = "s-carol" // team-a, agent-3, 2 days ago: held request
)

// aliceGaps are the gaps between alice's events, in order. The 10s gap is
// over MaxReplayGap.
var aliceGaps = []time.Duration{100 * time.Millisecond, 2 * time.Second, 10 * time.Second, 0, 250 * time.Millisecond}

type fixture struct {
	store store.Store
	srv   *server
	http  *httptest.Server
	blob  []byte
	ref   string
}

func newFixture(t *testing.T, st store.Store) *fixture {
	t.Helper()
	f := &fixture{store: st, blob: []byte("a large recorded body\x00\x01")}
	f.ref = store.BlobRef(f.blob)
	seed(t, st)
	if err := st.PutBlobs(t.Context(), []store.Blob{{Ref: f.ref, Data: f.blob}}); err != nil {
		t.Fatalf("put blobs: %v", err)
	}
	f.srv = newServer(Options{
		Store:   st,
		Logger:  slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		NATSURL: "nats://127.0.0.1:4222",
		Version: "v0.0.0-test",
	})
	f.srv.now = func() time.Time { return seedTime }
	f.http = httptest.NewServer(f.srv)
	t.Cleanup(f.http.Close)
	return f
}

// testWriter sends log output to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(b))
	return len(b), nil
}

func ev(session string, kind event.Kind, t time.Time, id *event.Identity, set func(*event.Event)) *event.Event {
	e := event.New(session, kind, t)
	e.Source = event.SourceSidecar
	e.Identity = id
	set(e)
	return e
}

func seed(t *testing.T, st store.Store) {
	t.Helper()
	aliceID := &event.Identity{User: "alice", Namespace: "team-a", Pod: "agent-1", ServiceAccount: "agent"}
	bobID := &event.Identity{User: "bob", Namespace: "team-b", Pod: "agent-2"}
	carolID := &event.Identity{User: "carol", Namespace: "team-a", Pod: "agent-3"}

	t0 := seedTime.Add(-3 * time.Hour)
	times := []time.Time{t0}
	for _, g := range aliceGaps {
		times = append(times, times[len(times)-1].Add(g))
	}
	gh := &event.Destination{Addr: "140.82.112.6:443", Host: "api.github.com", Protocol: "http1"}
	var evs []*event.Event
	for i, e := range []*event.Event{
		ev(alice, event.KindSessionStart, times[0], aliceID, func(e *event.Event) {
			e.SessionStart = &event.SessionStart{Origin: "pod"}
		}),
		ev(alice, event.KindConnOpen, times[1], aliceID, func(e *event.Event) {
			e.Dest, e.Conn, e.ConnOpen = gh, "c1", &event.ConnOpen{Client: "10.0.0.5:40000"}
		}),
		ev(alice, event.KindHTTPRequest, times[2], aliceID, func(e *event.Event) {
			e.Dest, e.Conn = gh, "c1"
			e.HTTPRequest = &event.HTTPRequest{Stream: 1, Proto: "HTTP/1.1", Method: "GET", URL: "https://api.github.com/repos", Host: "api.github.com"}
		}),
		ev(alice, event.KindHTTPResponse, times[3], aliceID, func(e *event.Event) {
			e.Dest, e.Conn = gh, "c1"
			e.HTTPResponse = &event.HTTPResponse{Stream: 1, Proto: "HTTP/1.1", Status: 200, Latency: 12 * time.Millisecond,
				Body: &event.Body{Size: 1229, Recorded: 1229, Ref: store.BlobRef([]byte("x"))}}
		}),
		ev(alice, event.KindK8sRequest, times[4], aliceID, func(e *event.Event) {
			e.Verdict = "allow"
			e.K8sRequest = &event.K8sRequest{Verb: "list", Resource: "pods", Namespace: "team-a", Status: 200}
		}),
		ev(alice, event.KindConnClose, times[5], aliceID, func(e *event.Event) {
			e.Dest, e.Conn = gh, "c1"
			e.ConnClose = &event.ConnClose{BytesUp: 120, BytesDown: 3481, Duration: 1200 * time.Millisecond}
		}),
	} {
		e.Seq = uint64(i + 1)
		evs = append(evs, e)
	}

	b0 := seedTime.Add(-30 * time.Minute)
	pg := &event.Destination{Addr: "10.0.0.9:5432", Protocol: "postgres"}
	zero := 0
	for i, e := range []*event.Event{
		ev(bob, event.KindSessionStart, b0, bobID, func(e *event.Event) {
			e.SessionStart = &event.SessionStart{Origin: "run", Command: []string{"psql"}}
		}),
		ev(bob, event.KindConnOpen, b0.Add(time.Second), bobID, func(e *event.Event) {
			e.Dest, e.Conn, e.ConnOpen = pg, "c1", &event.ConnOpen{}
		}),
		ev(bob, event.KindSQLQuery, b0.Add(2*time.Second), bobID, func(e *event.Event) {
			e.Dest, e.Conn, e.Verdict = pg, "c1", "deny"
			e.SQLQuery = &event.SQLQuery{Stream: 1, Statement: "DROP TABLE users"}
		}),
		ev(bob, event.KindSessionEnd, b0.Add(3*time.Second), bobID, func(e *event.Event) {
			e.SessionEnd = &event.SessionEnd{ExitCode: &zero}
		}),
	} {
		e.Seq = uint64(i + 1)
		evs = append(evs, e)
	}

	c0 := seedTime.Add(-48 * time.Hour)
	for i, e := range []*event.Event{
		ev(carol, event.KindSessionStart, c0, carolID, func(e *event.Event) {
			e.SessionStart = &event.SessionStart{Origin: "pod"}
		}),
		ev(carol, event.KindHTTPRequest, c0.Add(time.Second), carolID, func(e *event.Event) {
			e.Verdict = "held"
			e.Dest = &event.Destination{Addr: "10.0.0.7:80", Host: "deploy.internal", Protocol: "http1"}
			e.HTTPRequest = &event.HTTPRequest{Stream: 1, Proto: "HTTP/1.1", Method: "POST", URL: "/deploy", Host: "deploy.internal"}
		}),
	} {
		e.Seq = uint64(i + 1)
		evs = append(evs, e)
	}
	for _, e := range evs {
		if err := e.Validate(); err != nil {
			t.Fatalf("fixture event invalid: %v", err)
		}
	}
	if _, err := st.Append(t.Context(), evs); err != nil {
		t.Fatalf("append fixture: %v", err)
	}
}

// get performs a GET against the fixture's server.
func (f *fixture) get(t *testing.T, path string, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, f.http.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := f.http.Client().Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}
