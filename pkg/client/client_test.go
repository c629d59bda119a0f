package client_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/api"
	"github.com/chaperone-dev/chaperone/pkg/client"
	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/store"
	"github.com/chaperone-dev/chaperone/pkg/store/sqlite"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// server starts the real API over a real SQLite store holding sessions
// s1 (3 events) and s2 (1 event), and records Authorization headers.
func server(t *testing.T) (*httptest.Server, []byte, func() []string) {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var evs []*event.Event
	for i, k := range []event.Kind{event.KindSessionStart, event.KindProcessExec, event.KindSessionEnd} {
		e := event.New("s1", k, t0.Add(time.Duration(i)*time.Millisecond))
		e.Seq = uint64(i + 1)
		e.Identity = &event.Identity{User: "alice", Namespace: "ns"}
		switch k {
		case event.KindSessionStart:
			e.SessionStart = &event.SessionStart{Origin: "run"}
		case event.KindProcessExec:
			e.ProcessExec = &event.ProcessExec{ExecID: "x", PID: 7, Binary: "/bin/true"}
		case event.KindSessionEnd:
			e.SessionEnd = &event.SessionEnd{}
		}
		evs = append(evs, e)
	}
	e := event.New("s2", event.KindSessionStart, t0.Add(time.Hour))
	e.Seq, e.SessionStart = 1, &event.SessionStart{Origin: "pod"}
	evs = append(evs, e)
	if _, err := st.Append(t.Context(), evs); err != nil {
		t.Fatal(err)
	}
	blob := []byte("blob bytes")
	if err := st.PutBlobs(t.Context(), []store.Blob{{Ref: store.BlobRef(blob), Data: blob}}); err != nil {
		t.Fatal(err)
	}
	h := api.New(api.Options{Store: st, Version: "v1.2.3", NATSURL: "nats://x:4222", LocalMode: true})
	var mu sync.Mutex
	var auths []string
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auths = append(auths, r.Header.Get("Authorization"))
		mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	return hs, blob, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(auths)
	}
}

func TestClient(t *testing.T) {
	hs, blob, auths := server(t)
	c, err := client.New(hs.URL+"/", client.WithToken("tok"), client.WithHTTPClient(hs.Client()))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	info, err := c.Info(ctx)
	if err != nil || info != (client.Info{Version: "v1.2.3", NATS: "nats://x:4222", LocalMode: true}) {
		t.Errorf("Info = %+v, %v", info, err)
	}

	var ids []string
	for s, err := range c.AllSessions(ctx, client.SessionQuery{Limit: 1}) {
		if err != nil {
			t.Fatalf("AllSessions: %v", err)
		}
		ids = append(ids, s.ID)
	}
	if !slices.Equal(ids, []string{"s2", "s1"}) {
		t.Errorf("AllSessions = %v", ids)
	}
	page, err := c.Sessions(ctx, client.SessionQuery{User: "alice", Since: "2026-03-01T00:00:00Z"})
	if err != nil || len(page.Sessions) != 1 || page.Sessions[0].ID != "s1" {
		t.Errorf("Sessions(user=alice) = %+v, %v", page, err)
	}

	_, err = c.Sessions(ctx, client.SessionQuery{Limit: 5000})
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != 400 || ae.Param != "limit" || ae.RequestID == "" {
		t.Errorf("bad limit: %v (%+v)", err, ae)
	}

	s, err := c.Session(ctx, "s1")
	if err != nil || s.Events != 3 || !s.Ended {
		t.Errorf("Session = %+v, %v", s, err)
	}
	if _, err := c.Session(ctx, "nope"); !client.IsNotFound(err) {
		t.Errorf("unknown session: %v", err)
	}
	if _, err := c.Session(ctx, "a/b"); !errors.As(err, &ae) || ae.Status != 400 || ae.Param != "id" {
		t.Errorf("invalid id: %v", err)
	}

	var idx []uint64
	if err := c.Events(ctx, "s1", 1, func(e *event.Event) error {
		idx = append(idx, e.Chain.Index)
		return nil
	}); err != nil || !slices.Equal(idx, []uint64{2, 3}) {
		t.Errorf("Events(after 1) = %v, %v", idx, err)
	}
	stop := errors.New("stop")
	if err := c.Events(ctx, "s1", 0, func(*event.Event) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("Events callback error = %v", err)
	}

	var kinds []event.Kind
	if err := c.Replay(ctx, "s1", client.ReplayOptions{Speed: 1000}, func(e *event.Event) error {
		kinds = append(kinds, e.Kind)
		return nil
	}); err != nil {
		t.Fatalf("Replay: %v", err)
	}
	if want := []event.Kind{event.KindSessionStart, event.KindProcessExec, event.KindSessionEnd}; !slices.Equal(kinds, want) {
		t.Errorf("Replay kinds = %v", kinds)
	}
	kinds = nil
	if err := c.Replay(ctx, "s1", client.ReplayOptions{After: 2}, func(e *event.Event) error {
		kinds = append(kinds, e.Kind)
		return nil
	}); err != nil || !slices.Equal(kinds, []event.Kind{event.KindSessionEnd}) {
		t.Errorf("Replay(after 2) = %v, %v", kinds, err)
	}
	if err := c.Replay(ctx, "s1", client.ReplayOptions{Speed: 5000}, nil); !errors.As(err, &ae) || ae.Param != "speed" {
		t.Errorf("Replay bad speed: %v", err)
	}

	v, err := c.Verify(ctx, "s1")
	if err != nil || !v.OK || v.Events != 3 {
		t.Errorf("Verify = %+v, %v", v, err)
	}
	b, err := c.Blob(ctx, store.BlobRef(blob))
	if err != nil || string(b) != string(blob) {
		t.Errorf("Blob = %q, %v", b, err)
	}
	if _, err := c.Blob(ctx, store.BlobRef([]byte("none"))); !client.IsNotFound(err) {
		t.Errorf("missing blob: %v", err)
	}
	for _, a := range auths() {
		if a != "Bearer tok" {
			t.Fatalf("Authorization = %q", a)
		}
	}
}

func TestReplayIncomplete(t *testing.T) {
	e := event.New("s1", event.KindSessionStart, t0)
	e.Seq, e.SessionStart, e.Chain = 1, &event.SessionStart{}, &event.Chain{Index: 1, Hash: "h"}
	data, _ := event.Encode(e)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Write([]byte("event: session.start\nid: 1\ndata: " + string(data) + "\n\n"))
	}))
	defer hs.Close()
	c, _ := client.New(hs.URL)
	n := 0
	err := c.Replay(t.Context(), "s1", client.ReplayOptions{}, func(*event.Event) error { n++; return nil })
	if !errors.Is(err, client.ErrIncomplete) || n != 1 || !strings.Contains(err.Error(), "after index 1") {
		t.Errorf("cut replay: %v after %d events", err, n)
	}
}

func TestNewRejectsBadURL(t *testing.T) {
	for _, u := range []string{"", "127.0.0.1:8080", "ftp://x", "http://"} {
		if _, err := client.New(u); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
}
