package storetest

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/store"
)

func testSummary(t *testing.T, s store.Store) {
	ctx := t.Context()
	// Events arrive out of time order; an identity-carrying event precedes
	// session.start, whose identity wins; the service account comes only
	// from a later event.
	appendOK(t, s,
		ev("sum", event.KindConnOpen, at(5), withDest("10.0.0.9:5432", ""), withIdentity(event.Identity{User: "early", Pod: "early-pod"})),
		ev("sum", event.KindHTTPRequest, at(3), withDest("10.0.0.8:443", "api.example.com"), withVerdict("allow")),
	)
	appendOK(t, s,
		ev("sum", event.KindSessionStart, at(1), withOrigin("pod"), withIdentity(event.Identity{User: "alice@example.com", Namespace: "agents", Pod: "copilot-1"})),
		ev("sum", event.KindK8sRequest, at(7), withResource("pods"), withVerdict("deny"), withIdentity(event.Identity{User: "mallory", ServiceAccount: "copilot"})),
		ev("sum", event.KindK8sRequest, at(8), withResource("secrets"), withVerdict("deny")),
		ev("sum", event.KindHTTPRequest, at(6), withDest("10.0.0.8:443", "api.example.com")),
	)
	ss, err := s.Session(ctx, "sum")
	if err != nil {
		t.Fatalf("Session: %v", err)
	}
	if ss.Ended {
		t.Fatal("session ended before session.end")
	}
	want := store.Session{
		ID: "sum", User: "alice@example.com", Namespace: "agents", Pod: "copilot-1", ServiceAccount: "copilot",
		Origin: "pod", Started: at(1), LastEvent: at(8), Events: 6,
		Resources: []string{"10.0.0.9:5432", "api.example.com", "k8s:pods", "k8s:secrets"},
		Verdicts:  []string{"allow", "deny"},
	}
	compareSummary(t, ss, want)

	appendOK(t, s, ev("sum", event.KindSessionEnd, at(9)))
	ss, err = s.Session(ctx, "sum")
	if err != nil {
		t.Fatalf("Session: %v", err)
	}
	want.Ended, want.LastEvent, want.Events = true, at(9), 7
	compareSummary(t, ss, want)

	// A `chaperonectl run` session, identity only from later events.
	appendOK(t, s,
		ev("run1", event.KindSessionStart, at(20), withOrigin("run")),
		ev("run1", event.KindPolicyDecision, at(21), withIdentity(event.Identity{User: "bob"})),
	)
	ss, err = s.Session(ctx, "run1")
	if err != nil {
		t.Fatalf("Session: %v", err)
	}
	compareSummary(t, ss, store.Session{ID: "run1", User: "bob", Origin: "run", Started: at(20), LastEvent: at(21), Events: 2})
}

// compareSummary compares sessions, ignoring Head and the order of
// Resources and Verdicts.
func compareSummary(t *testing.T, got, want store.Session) {
	t.Helper()
	norm := func(s store.Session) string {
		s.Resources, s.Verdicts = slices.Sorted(slices.Values(s.Resources)), slices.Sorted(slices.Values(s.Verdicts))
		if len(s.Resources) == 0 {
			s.Resources = nil
		}
		if len(s.Verdicts) == 0 {
			s.Verdicts = nil
		}
		s.Head = ""
		s.Started, s.LastEvent = s.Started.UTC(), s.LastEvent.UTC()
		return fmt.Sprintf("%+v", s)
	}
	if g, w := norm(got), norm(want); g != w {
		t.Fatalf("session summary\n got %s\nwant %s", g, w)
	}
}

// fixture is a session for the filter and paging tests.
type fixture struct {
	id         string
	user, ns   string
	pod        string
	start      int
	host, addr string
	k8s        string
	verdict    string
}

func (f fixture) events() []*event.Event {
	out := []*event.Event{ev(f.id, event.KindSessionStart, at(f.start), withIdentity(event.Identity{User: f.user, Namespace: f.ns, Pod: f.pod}))}
	if f.host != "" || f.addr != "" {
		out = append(out, ev(f.id, event.KindConnOpen, at(f.start+1), withDest(f.addr, f.host)))
	}
	if f.k8s != "" {
		out = append(out, ev(f.id, event.KindK8sRequest, at(f.start+2), withResource(f.k8s)))
	}
	if f.verdict != "" {
		out = append(out, ev(f.id, event.KindPolicyDecision, at(f.start+3), withVerdict(f.verdict)))
	}
	return out
}

// ids lists every session matching q, following cursors, and checks that
// pages are full except the last.
func ids(t *testing.T, s store.Store, q store.SessionQuery) []string {
	t.Helper()
	var out []string
	for pages := 0; ; pages++ {
		if pages > 10000 {
			t.Fatal("paging does not end")
		}
		p, err := s.Sessions(t.Context(), q)
		if err != nil {
			t.Fatalf("Sessions(%+v): %v", q, err)
		}
		for _, ss := range p.Sessions {
			out = append(out, ss.ID)
		}
		if p.Next == "" {
			return out
		}
		if len(p.Sessions) != q.PageSize() {
			t.Fatalf("page %d has %d sessions and a next cursor, want %d", pages, len(p.Sessions), q.PageSize())
		}
		q.Cursor = p.Next
	}
}

func testSessionFilters(t *testing.T, s store.Store) {
	fixtures := []fixture{
		{id: "f1", user: "alice", ns: "agents", pod: "p1", start: 100, host: "github.com", addr: "140.82.1.1:443", verdict: "allow"},
		{id: "f2", user: "alice", ns: "dev", pod: "p2", start: 200, addr: "10.0.0.5:5432", k8s: "pods", verdict: "deny"},
		{id: "f3", user: "bob", ns: "agents", pod: "p3", start: 300, host: "api.openai.com", addr: "1.2.3.4:443", k8s: "secrets", verdict: "held"},
		{id: "f4", user: "bob", ns: "dev", pod: "p1", start: 400, k8s: "pods"},
		{id: "f5", user: "carol", ns: "agents", pod: "p5", start: 500, host: "github.com", addr: "140.82.1.2:443", verdict: "deny"},
	}
	var batch []*event.Event
	for _, f := range fixtures {
		batch = append(batch, f.events()...)
	}
	appendOK(t, s, batch...)

	tests := []struct {
		name string
		q    store.SessionQuery
		want []string
	}{
		{"all newest first", store.SessionQuery{}, []string{"f5", "f4", "f3", "f2", "f1"}},
		{"user", store.SessionQuery{User: "alice"}, []string{"f2", "f1"}},
		{"namespace", store.SessionQuery{Namespace: "agents"}, []string{"f5", "f3", "f1"}},
		{"pod", store.SessionQuery{Pod: "p1"}, []string{"f4", "f1"}},
		{"since inclusive", store.SessionQuery{Since: at(300)}, []string{"f5", "f4", "f3"}},
		{"until exclusive", store.SessionQuery{Until: at(300)}, []string{"f2", "f1"}},
		{"since and until", store.SessionQuery{Since: at(200), Until: at(400)}, []string{"f3", "f2"}},
		{"resource host", store.SessionQuery{Resource: "github.com"}, []string{"f5", "f1"}},
		{"resource addr without host", store.SessionQuery{Resource: "10.0.0.5:5432"}, []string{"f2"}},
		{"addr with host is not a resource", store.SessionQuery{Resource: "1.2.3.4:443"}, nil},
		{"resource k8s", store.SessionQuery{Resource: "k8s:pods"}, []string{"f4", "f2"}},
		{"verdict", store.SessionQuery{Verdict: "deny"}, []string{"f5", "f2"}},
		{"combined", store.SessionQuery{User: "bob", Namespace: "agents", Resource: "k8s:secrets", Verdict: "held"}, []string{"f3"}},
		{"combined paged", store.SessionQuery{Namespace: "agents", Resource: "github.com", Limit: 1}, []string{"f5", "f1"}},
		{"no match", store.SessionQuery{User: "nobody"}, nil},
		{"tags do not cross", store.SessionQuery{Resource: "github.com", Verdict: "held"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ids(t, s, tt.q); !slices.Equal(got, tt.want) {
				t.Fatalf("Sessions(%+v) = %v, want %v", tt.q, got, tt.want)
			}
		})
	}

	// A page carries full summaries.
	p, err := s.Sessions(t.Context(), store.SessionQuery{User: "bob", Pod: "p3"})
	if err != nil || len(p.Sessions) != 1 {
		t.Fatalf("Sessions: %+v, %v", p, err)
	}
	compareSummary(t, p.Sessions[0], store.Session{ID: "f3", User: "bob", Namespace: "agents", Pod: "p3", Origin: "pod",
		Started: at(300), LastEvent: at(303), Events: 4,
		Resources: []string{"api.openai.com", "k8s:secrets"}, Verdicts: []string{"held"}})
}

func testSessionPaging(t *testing.T, s store.Store) {
	// 40 sessions; groups of four share a start time, so the id breaks ties.
	var batch []*event.Event
	var want []string
	for i := range 40 {
		id := fmt.Sprintf("page-%02d", i)
		start := i / 4
		batch = append(batch, ev(id, event.KindSessionStart, at(start), withIdentity(event.Identity{User: []string{"u0", "u1"}[i%2]})))
	}
	appendOK(t, s, batch...)
	for i := 39; i >= 0; i-- {
		want = append(want, fmt.Sprintf("page-%02d", i))
	}
	for _, limit := range []int{1, 3, 4, 7, 39, 40, 41} {
		t.Run(fmt.Sprintf("limit %d", limit), func(t *testing.T) {
			if got := ids(t, s, store.SessionQuery{Limit: limit}); !slices.Equal(got, want) {
				t.Fatalf("paged with limit %d:\n got %v\nwant %v", limit, got, want)
			}
		})
	}
	var wantU1 []string
	for _, id := range want {
		var n int
		_, _ = fmt.Sscanf(id, "page-%d", &n)
		if n%2 == 1 {
			wantU1 = append(wantU1, id)
		}
	}
	if got := ids(t, s, store.SessionQuery{User: "u1", Limit: 3}); !slices.Equal(got, wantU1) {
		t.Fatalf("filtered paging:\n got %v\nwant %v", got, wantU1)
	}

	// A cursor stays valid while new sessions arrive: newer ones do not
	// shift the remaining pages.
	p1, err := s.Sessions(t.Context(), store.SessionQuery{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	appendOK(t, s, ev("page-new", event.KindSessionStart, at(1000)))
	rest := ids(t, s, store.SessionQuery{Limit: 10, Cursor: p1.Next})
	if !slices.Equal(rest, want[10:]) {
		t.Fatalf("after an insert, the rest is %v, want %v", rest, want[10:])
	}
}

func testSessionLimits(t *testing.T, s store.Store) {
	var batch []*event.Event
	for i := range store.MaxLimit + 1 {
		batch = append(batch, ev(fmt.Sprintf("lim-%04d", i), event.KindSessionStart, base.Add(time.Duration(i)*time.Millisecond)))
	}
	appendOK(t, s, batch...)
	for _, tt := range []struct{ limit, want int }{{0, store.DefaultLimit}, {-1, store.DefaultLimit}, {5, 5}, {store.MaxLimit * 10, store.MaxLimit}} {
		p, err := s.Sessions(t.Context(), store.SessionQuery{Limit: tt.limit})
		if err != nil {
			t.Fatalf("Sessions(limit %d): %v", tt.limit, err)
		}
		if len(p.Sessions) != tt.want || p.Next == "" {
			t.Fatalf("Sessions(limit %d): %d sessions, next %q; want %d and a cursor", tt.limit, len(p.Sessions), p.Next, tt.want)
		}
	}
}

func testBadCursor(t *testing.T, s store.Store) {
	appendOK(t, s, ev("c", event.KindSessionStart, at(0)))
	for _, c := range []string{"garbage", "!!", store.Cursor{ID: "bad id"}.String()} {
		if _, err := s.Sessions(t.Context(), store.SessionQuery{Cursor: c}); !errors.Is(err, store.ErrBadCursor) {
			t.Errorf("Sessions(cursor %q) = %v, want ErrBadCursor", c, err)
		}
	}
}

func testBlobs(t *testing.T, s store.Store) {
	ctx := t.Context()
	big := make([]byte, 300<<10)
	for i := range big {
		big[i] = byte(i * 7)
	}
	blobs := []store.Blob{
		{Ref: store.BlobRef([]byte("hello")), Data: []byte("hello")},
		{Ref: store.BlobRef(big), Data: big},
		{Ref: store.BlobRef(nil), Data: []byte{}},
	}
	for range 2 { // the second put is a no-op
		if err := s.PutBlobs(ctx, blobs); err != nil {
			t.Fatalf("PutBlobs: %v", err)
		}
	}
	for _, b := range blobs {
		got, err := s.Blob(ctx, b.Ref)
		if err != nil {
			t.Fatalf("Blob(%s): %v", b.Ref, err)
		}
		if string(got) != string(b.Data) {
			t.Fatalf("Blob(%s) returned %d different bytes", b.Ref, len(got))
		}
	}
	lie := store.Blob{Ref: store.BlobRef([]byte("claimed")), Data: []byte("actual")}
	if err := s.PutBlobs(ctx, []store.Blob{lie}); !errors.Is(err, store.ErrBlobMismatch) {
		t.Fatalf("PutBlobs with a wrong ref = %v, want ErrBlobMismatch", err)
	}
	if _, err := s.Blob(ctx, lie.Ref); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a refused blob is readable: %v", err)
	}
	if err := s.PutBlobs(ctx, []store.Blob{{Ref: "md5:abc", Data: []byte("x")}}); !errors.Is(err, store.ErrBlobMismatch) {
		t.Fatalf("PutBlobs with a foreign ref = %v, want ErrBlobMismatch", err)
	}
}

func testBlobInSession(t *testing.T, s store.Store) {
	ctx := t.Context()
	data := []byte("a body large enough to be stored once by its hash")
	ref := store.BlobRef(data)
	other := store.BlobRef([]byte("someone else's body"))
	if err := s.PutBlobs(ctx, []store.Blob{{Ref: ref, Data: data}, {Ref: other, Data: []byte("someone else's body")}}); err != nil {
		t.Fatalf("PutBlobs: %v", err)
	}
	appendOK(t, s,
		ev("blob-a", event.KindHTTPRequest, at(1), func(e *event.Event) {
			e.HTTPRequest.Body = &event.Body{Size: int64(len(data)), Ref: ref, Recorded: int64(len(data))}
		}),
		ev("blob-b", event.KindHTTPRequest, at(2)),
	)
	for _, c := range []struct {
		session, ref string
		want         bool
	}{
		{"blob-a", ref, true},
		{"blob-b", ref, false},
		{"blob-a", other, false},
		{"no-such-session", ref, false},
		{"blob-a", ref[:20], false}, // a prefix of a ref is not a ref
	} {
		got, err := s.BlobInSession(ctx, c.session, c.ref)
		if err != nil {
			t.Fatalf("BlobInSession(%s, %s): %v", c.session, c.ref, err)
		}
		if got != c.want {
			t.Errorf("BlobInSession(%s, %s) = %v, want %v", c.session, c.ref, got, c.want)
		}
	}
}
