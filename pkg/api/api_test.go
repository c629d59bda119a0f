package api

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/store"
)

func decode[T any](t *testing.T, resp *http.Response, wantStatus int) T {
	t.Helper()
	var v T
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	if resp.StatusCode != wantStatus {
		t.Fatalf("%s: status %d, want %d; body %s", resp.Request.URL, resp.StatusCode, wantStatus, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("content type %q, want application/json", ct)
	}
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return v
}

func TestHealthReadyInfo(t *testing.T) {
	f := newFixture(t, openSQLite(t))
	if got := decode[Status](t, f.get(t, "/healthz"), 200); got.Status != "ok" {
		t.Errorf("healthz = %+v", got)
	}
	if got := decode[Status](t, f.get(t, "/readyz"), 200); got.Status != "ready" {
		t.Errorf("readyz = %+v", got)
	}
	f.srv.ready = func(ctx context.Context) error { return errString("nats: not connected") }
	got := decode[Status](t, f.get(t, "/readyz"), 503)
	if got.Error != "nats: not connected" {
		t.Errorf("readyz not ready = %+v", got)
	}
	info := decode[Info](t, f.get(t, "/api/v1/info"), 200)
	if info != (Info{Version: "v0.0.0-test", NATS: "nats://127.0.0.1:4222"}) {
		t.Errorf("info = %+v", info)
	}
	e := decode[Error](t, f.get(t, "/api/v1/info?x=1"), 400)
	if e.Param != "x" {
		t.Errorf("info with unknown param: %+v", e)
	}
}

func ids(p store.SessionPage) []string {
	var out []string
	for _, s := range p.Sessions {
		out = append(out, s.ID)
	}
	return out
}

func TestListSessionsFilters(t *testing.T) {
	f := newFixture(t, openSQLite(t))
	tests := []struct {
		query string
		want  []string
	}{
		{"", []string{bob, alice, carol}},
		{"user=alice", []string{alice}},
		{"user=nobody", nil},
		{"namespace=team-a", []string{alice, carol}},
		{"pod=agent-2", []string{bob}},
		{"since=1h", []string{bob}},
		{"since=4h", []string{bob, alice}},
		{"since=7d", []string{bob, alice, carol}},
		{"until=1h", []string{alice, carol}},
		{"since=1d&until=1h", []string{alice}},
		{"since=" + url.QueryEscape(seedTime.Add(-3*time.Hour).Format("2006-01-02T15:04:05Z07:00")), []string{bob, alice}},
		{"until=2026-03-01T09:00:00%2B01:00", []string{carol}},
		{"resource=api.github.com", []string{alice}},
		{"resource=k8s:pods", []string{alice}},
		{"resource=pods", nil},
		{"resource=10.0.0.9:5432", []string{bob}},
		{"verdict=deny", []string{bob}},
		{"verdict=held", []string{carol}},
		{"verdict=allow&namespace=team-a", []string{alice}},
		{"verdict=denied", nil},
		{"limit=2", []string{bob, alice}},
		{"user=", []string{bob, alice, carol}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			page := decode[store.SessionPage](t, f.get(t, "/api/v1/sessions?"+tt.query), 200)
			if got := ids(page); !slices.Equal(got, tt.want) {
				t.Errorf("sessions?%s = %v, want %v", tt.query, got, tt.want)
			}
		})
	}
}

func TestListSessionsEmptyIsArray(t *testing.T) {
	f := newFixture(t, openSQLite(t))
	resp := f.get(t, "/api/v1/sessions?user=nobody")
	b, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(b), `"sessions":[]`) {
		t.Errorf("empty page = %s, want sessions as []", b)
	}
}

func TestListSessionsPaging(t *testing.T) {
	f := newFixture(t, openSQLite(t))
	var got []string
	cursor := ""
	for range 10 {
		q := "limit=1"
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		page := decode[store.SessionPage](t, f.get(t, "/api/v1/sessions?"+q), 200)
		got = append(got, ids(page)...)
		if cursor = page.Next; cursor == "" {
			break
		}
	}
	if want := []string{bob, alice, carol}; !slices.Equal(got, want) {
		t.Errorf("paged = %v, want %v", got, want)
	}
}

func TestListSessionsBadParams(t *testing.T) {
	f := newFixture(t, openSQLite(t))
	tests := []struct {
		query string
		param string
	}{
		{"limit=0", "limit"},
		{"limit=1001", "limit"},
		{"limit=-1", "limit"},
		{"limit=ten", "limit"},
		{"limit=1.5", "limit"},
		{"since=yesterday", "since"},
		{"since=-1h", "since"},
		{"since=2026-13-01T00:00:00Z", "since"},
		{"until=soon", "until"},
		{"since=1h&until=2h", "until"},
		{"verdict=maybe", "verdict"},
		{"cursor=not-a-cursor", "cursor"},
		{"cursor=" + url.QueryEscape(store.Cursor{ID: "x"}.String()) + "x", "cursor"},
		{"color=red", "color"},
		{"user=a&user=b", "user"},
		{"namespace=" + strings.Repeat("n", 2000), "namespace"},
		{"user=%zz", "query"},
	}
	for _, tt := range tests {
		t.Run(tt.query[:min(len(tt.query), 40)], func(t *testing.T) {
			e := decode[Error](t, f.get(t, "/api/v1/sessions?"+tt.query), 400)
			if e.Param != tt.param || e.Error == "" {
				t.Errorf("sessions?%s = %+v, want param %q", tt.query, e, tt.param)
			}
		})
	}
}

func TestGetSession(t *testing.T) {
	f := newFixture(t, openSQLite(t))
	s := decode[store.Session](t, f.get(t, "/api/v1/sessions/"+alice), 200)
	if s.ID != alice || s.User != "alice" || s.Events != 6 || s.Head == "" {
		t.Errorf("session = %+v", s)
	}
	if e := decode[Error](t, f.get(t, "/api/v1/sessions/nope"), 404); !strings.Contains(e.Error, "not found") {
		t.Errorf("unknown session: %+v", e)
	}
	for _, path := range []string{
		"/api/v1/sessions/bad.id",
		"/api/v1/sessions/" + strings.Repeat("a", 129),
		"/api/v1/sessions/a%20b/events",
		"/api/v1/sessions/a%2Fb/verify",
		"/api/v1/sessions/a$b/replay",
	} {
		if e := decode[Error](t, f.get(t, path), 400); e.Param != "id" {
			t.Errorf("%s: %+v, want param id", path, e)
		}
	}
	if e := decode[Error](t, f.get(t, "/api/v1/sessions/"+alice+"?x=1"), 400); e.Param != "x" {
		t.Errorf("unknown param: %+v", e)
	}
}

func readEvents(t *testing.T, resp *http.Response) []*event.Event {
	t.Helper()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("events: status %d: %s", resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Fatalf("content type %q", ct)
	}
	var out []*event.Event
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, event.MaxSize+1)
	for sc.Scan() {
		e, err := event.Decode(sc.Bytes())
		if err != nil {
			t.Fatalf("decode line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read events: %v", err)
	}
	return out
}

func TestEvents(t *testing.T) {
	f := newFixture(t, openSQLite(t))
	evs := readEvents(t, f.get(t, "/api/v1/sessions/"+alice+"/events"))
	if len(evs) != 6 {
		t.Fatalf("got %d events, want 6", len(evs))
	}
	wantKinds := []event.Kind{event.KindSessionStart, event.KindConnOpen, event.KindHTTPRequest, event.KindHTTPResponse, event.KindK8sRequest, event.KindConnClose}
	for i, e := range evs {
		if e.Chain == nil || e.Chain.Index != uint64(i+1) || e.Kind != wantKinds[i] || e.Session != alice {
			t.Errorf("event %d: kind %s chain %+v", i, e.Kind, e.Chain)
		}
		if i > 0 && e.Chain.Prev != evs[i-1].Chain.Hash {
			t.Errorf("event %d: prev %s does not link to %s", i, e.Chain.Prev, evs[i-1].Chain.Hash)
		}
	}
	tail := readEvents(t, f.get(t, "/api/v1/sessions/"+alice+"/events?after=4"))
	if len(tail) != 2 || tail[0].Chain.Index != 5 || tail[1].Chain.Index != 6 {
		t.Errorf("after=4: %d events", len(tail))
	}
	if none := readEvents(t, f.get(t, "/api/v1/sessions/"+alice+"/events?after=99")); len(none) != 0 {
		t.Errorf("after=99: %d events", len(none))
	}
	decode[Error](t, f.get(t, "/api/v1/sessions/nope/events"), 404)
	for q, param := range map[string]string{"after=-1": "after", "after=x": "after", "speed=2": "speed"} {
		if e := decode[Error](t, f.get(t, "/api/v1/sessions/"+alice+"/events?"+q), 400); e.Param != param {
			t.Errorf("events?%s = %+v, want param %s", q, e, param)
		}
	}
}

// TestEventsPaging checks a session longer than one store page streams whole.
func TestEventsPaging(t *testing.T) {
	st := openSQLite(t)
	f := newFixture(t, st)
	n := 2*pageSize + 3
	var evs []*event.Event
	for i := range n {
		e := ev("long", event.KindProcessExit, seedTime.Add(durationMS(i)), nil, func(e *event.Event) {
			e.ProcessExit = &event.ProcessExit{ExecID: "x", PID: i}
		})
		e.Seq = uint64(i + 1)
		evs = append(evs, e)
	}
	if _, err := st.Append(t.Context(), evs); err != nil {
		t.Fatal(err)
	}
	got := readEvents(t, f.get(t, "/api/v1/sessions/long/events"))
	if len(got) != n {
		t.Fatalf("got %d events, want %d", len(got), n)
	}
	for i, e := range got {
		if e.Chain.Index != uint64(i+1) || e.ProcessExit.PID != i {
			t.Fatalf("event %d out of order: index %d pid %d", i, e.Chain.Index, e.ProcessExit.PID)
		}
	}
}

func TestVerify(t *testing.T) {
	st := newMemStore()
	f := newFixture(t, st)
	res := decode[store.VerifyResult](t, f.get(t, "/api/v1/sessions/"+alice+"/verify"), 200)
	if !res.OK || res.Events != 6 || res.FirstBad != nil || res.Session != alice {
		t.Errorf("verify good chain = %+v", res)
	}
	st.tamper(bob, 3)
	res = decode[store.VerifyResult](t, f.get(t, "/api/v1/sessions/"+bob+"/verify"), 200)
	if res.OK || res.FirstBad == nil || res.FirstBad.Index != 3 {
		t.Errorf("verify tampered chain = %+v", res)
	}
	decode[Error](t, f.get(t, "/api/v1/sessions/nope/verify"), 404)
}

func TestBlob(t *testing.T) {
	f := newFixture(t, openSQLite(t))
	resp := f.get(t, "/api/v1/blobs/"+f.ref)
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != string(f.blob) || resp.Header.Get("Content-Type") != "application/octet-stream" {
		t.Errorf("blob: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	decode[Error](t, f.get(t, "/api/v1/blobs/"+store.BlobRef([]byte("missing"))), 404)
	for _, ref := range []string{"abc", "sha256:xyz", "md5:" + strings.Repeat("0", 64), strings.ToUpper(f.ref)} {
		if e := decode[Error](t, f.get(t, "/api/v1/blobs/"+ref), 400); e.Param != "ref" {
			t.Errorf("blob %s: %+v", ref, e)
		}
	}
}

func TestUnroutedIsJSON(t *testing.T) {
	f := newFixture(t, openSQLite(t))
	decode[Error](t, f.get(t, "/api/v1/nothing"), 404)
	decode[Error](t, f.get(t, "/api/v1/sessions/"+alice+"/nothing"), 404)
	resp, err := f.http.Client().Post(f.http.URL+"/api/v1/sessions", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	decode[Error](t, resp, 405)
	if allow := resp.Header.Get("Allow"); !strings.Contains(allow, "GET") {
		t.Errorf("Allow = %q", allow)
	}
}

func TestPanicRecovered(t *testing.T) {
	st := newMemStore()
	st.panicOn = "boom"
	f := newFixture(t, st)
	e := decode[Error](t, f.get(t, "/api/v1/sessions/boom"), 500)
	if !strings.Contains(e.Error, "internal error") {
		t.Errorf("panic answer = %+v", e)
	}
	// The server keeps serving.
	decode[Status](t, f.get(t, "/healthz"), 200)
}

func TestRequestID(t *testing.T) {
	f := newFixture(t, openSQLite(t))
	if got := f.get(t, "/healthz", RequestIDHeader, "abc-123").Header.Get(RequestIDHeader); got != "abc-123" {
		t.Errorf("request id echoed as %q", got)
	}
	for _, bad := range []string{"", "has space", "a/b", strings.Repeat("a", 200)} {
		got := f.get(t, "/healthz", RequestIDHeader, bad).Header.Get(RequestIDHeader)
		if got == "" || got == bad {
			t.Errorf("bad request id %q answered with %q", bad, got)
		}
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	st := openSQLite(t)
	seed(t, st)
	srv := newServer(Options{Store: st, Registry: reg})
	// A second handler on the same registry shares the collectors.
	_ = newServer(Options{Store: st, Registry: reg})
	f := &fixture{srv: srv}
	f.http = newHTTPTest(t, srv)
	f.get(t, "/api/v1/sessions/"+alice).Body.Close()
	f.get(t, "/api/v1/sessions/nope").Body.Close()
	resp := f.get(t, "/metrics")
	b, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`chaperone_api_requests_total{code="200",method="GET",route="/api/v1/sessions/{id}"} 1`,
		`chaperone_api_requests_total{code="404",method="GET",route="/api/v1/sessions/{id}"} 1`,
		`chaperone_api_request_duration_seconds_count{route="/api/v1/sessions/{id}"} 2`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
