package approvals

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/natsbus/natstest"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/store/sqlite"
)

var testSecret = []byte("8f742231b10e8888abcd99yyyzzz85a5")

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// sink is an httptest server standing in for Slack: it keeps every
// message posted to it.
type sink struct {
	srv  *httptest.Server
	msgs chan Message
}

func newSink(t *testing.T) *sink {
	s := &sink{msgs: make(chan Message, 16)}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m Message
		if err := json.Unmarshal(b, &m); err != nil {
			t.Errorf("slack sink: %v: %s", err, b)
		}
		s.msgs <- m
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *sink) next(t *testing.T) Message {
	t.Helper()
	select {
	case m := <-s.msgs:
		return m
	case <-t.Context().Done():
		t.Fatal("no message posted")
	case <-time.After(10 * time.Second):
		t.Fatal("no message posted within 10s")
	}
	return Message{}
}

type fixture struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	store    *sqlite.Store
	svc      *Service
	cb       *Callback
	clock    *clock
	webhook  *sink
	response *sink
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := t.Context()
	ns := natstest.Start(t)
	nc, js := ns.Conn, ns.JS
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	f := &fixture{nc: nc, js: js, store: st, clock: &clock{t: time.Now().UTC()}, webhook: newSink(t), response: newSink(t)}
	f.svc = f.service(t)
	return f
}

// service starts a Service on the fixture's NATS, as a (re)started
// server would.
func (f *fixture) service(t *testing.T) *Service {
	t.Helper()
	svc, err := New(t.Context(), Options{NATS: f.nc, JetStream: f.js, Store: f.store,
		Notifier: &Webhook{URL: f.webhook.srv.URL}, ExpireEvery: time.Hour, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	f.cb = svc.Callback(CallbackOptions{Secret: testSecret, Users: map[string]SlackUser{
		"UANN": {Email: "ann@example.com", Groups: []string{"sre"}},
		"UBOB": {Email: "bob@example.com", Groups: []string{"sre"}},
		"UDEV": {Email: "dev@example.com", Groups: []string{"sre"}},
		"UEVE": {Email: "eve@example.com", Groups: []string{"marketing"}},
	}})
	return svc
}

// run runs the service's NATS side until the test ends.
func (f *fixture) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := f.svc.Run(ctx); err != nil {
			t.Error(err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

func testRequest(id string) Request {
	return Request{
		ID: id, Session: "sess-1", Rule: "secrets-need-approval",
		Summary: "delete secret prod/db", What: "DELETE secrets/db", Who: "agent (sa default/agent)",
		Where: "kubernetes prod", ApproverGroups: []string{"sre"}, MinApprovals: 1,
		Timeout: 10 * time.Minute, Requester: event.Identity{User: "dev@example.com", ServiceAccount: "system:serviceaccount:default:agent"},
	}
}

// payload builds a block_actions form body.
func payload(user, action, id, ts, responseURL string) []byte {
	p := map[string]any{
		"type":         "block_actions",
		"user":         map[string]string{"id": user, "username": user},
		"trigger_id":   "trig-" + user + "-" + ts,
		"response_url": responseURL,
		"actions": []map[string]string{{
			"action_id": action, "block_id": "actions-" + id, "value": id, "action_ts": ts, "type": "button",
		}},
	}
	b, _ := json.Marshal(p)
	return []byte(url.Values{"payload": {string(b)}}.Encode())
}

// callback sends a signed callback body at time at and returns the status.
func (f *fixture) callback(t *testing.T, body []byte, at time.Time, sig string) (int, string) {
	t.Helper()
	ts := strconv.FormatInt(at.Unix(), 10)
	if sig == "" {
		sig = Sign(testSecret, ts, body)
	}
	r := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/callbacks/slack", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set(HeaderTimestamp, ts)
	r.Header.Set(HeaderSignature, sig)
	w := httptest.NewRecorder()
	f.cb.ServeHTTP(w, r)
	return w.Code, w.Body.String()
}

// sessionEvents returns the kinds of the session's stored events.
func (f *fixture) sessionEvents(t *testing.T, session string) []*event.Event {
	t.Helper()
	var out []*event.Event
	if err := f.store.Events(t.Context(), session, 0, func(e *event.Event) error {
		out = append(out, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}
