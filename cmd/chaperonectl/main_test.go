package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/api"
	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/store"
	"github.com/chaperone-dev/chaperone/pkg/store/sqlite"
)

var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// brokenVerify reports a broken chain for session "s-bad", to exercise the
// CLI's failure path; everything else is the real store.
type brokenVerify struct{ store.Store }

func (b brokenVerify) Verify(ctx context.Context, session string) (store.VerifyResult, error) {
	res, err := b.Store.Verify(ctx, session)
	if err == nil && session == "s-bad" {
		var id string
		_ = b.Events(ctx, session, 1, func(e *event.Event) error { id = e.ID; return context.Canceled })
		res.OK, res.FirstBad = false, &store.BadLink{Index: 2, EventID: id, Reason: "hash does not match the stored event"}
	}
	return res, err
}

type testServer struct {
	url   string
	mu    sync.Mutex
	auths []string
}

func (ts *testServer) lastAuth() string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.auths[len(ts.auths)-1]
}

func newTestServer(t *testing.T) *testServer {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "ctl.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	add := func(session string, start time.Time, id *event.Identity, sets ...func(*event.Event)) {
		var evs []*event.Event
		for i, set := range sets {
			e := event.New(session, "", start.Add(time.Duration(i)*10*time.Millisecond))
			e.Seq, e.Identity = uint64(i+1), id
			set(e)
			evs = append(evs, e)
		}
		if _, err := st.Append(t.Context(), evs); err != nil {
			t.Fatal(err)
		}
	}
	gh := &event.Destination{Addr: "140.82.112.6:80", Host: "example.test", Protocol: "http1"}
	add("s1", t0, &event.Identity{User: "alice", Namespace: "team-a", Pod: "agent-1"},
		func(e *event.Event) {
			e.Kind, e.SessionStart = event.KindSessionStart, &event.SessionStart{Origin: "pod"}
		},
		func(e *event.Event) { e.Kind, e.Dest, e.ConnOpen = event.KindConnOpen, gh, &event.ConnOpen{} },
		func(e *event.Event) {
			e.Kind, e.Dest, e.Verdict = event.KindHTTPRequest, gh, "allow"
			e.HTTPRequest = &event.HTTPRequest{Method: "GET", URL: "/path", Host: "example.test"}
		},
		func(e *event.Event) {
			e.Kind, e.Dest = event.KindHTTPResponse, gh
			e.HTTPResponse = &event.HTTPResponse{Status: 200, Latency: 12 * time.Millisecond, Body: &event.Body{Size: 1229}}
		},
		func(e *event.Event) {
			e.Kind, e.Dest = event.KindConnClose, gh
			e.ConnClose = &event.ConnClose{BytesUp: 120, BytesDown: 3481, Duration: 1200 * time.Millisecond}
		},
	)
	add("s2", t0.Add(time.Hour), &event.Identity{User: "bob", Namespace: "team-b", Pod: "agent-2"},
		func(e *event.Event) {
			e.Kind, e.SessionStart = event.KindSessionStart, &event.SessionStart{Origin: "pod"}
		},
		func(e *event.Event) {
			e.Kind, e.Verdict = event.KindSQLQuery, "deny"
			e.SQLQuery = &event.SQLQuery{Statement: "DROP TABLE users"}
		},
	)
	add("s-bad", t0.Add(-time.Hour), &event.Identity{User: "carol"},
		func(e *event.Event) {
			e.Kind, e.SessionStart = event.KindSessionStart, &event.SessionStart{Origin: "run"}
		},
		func(e *event.Event) {
			e.Kind, e.ProcessExec = event.KindProcessExec, &event.ProcessExec{PID: 9, Binary: "/bin/rm", Arguments: []string{"rm", "-rf", "/"}}
		},
	)
	h := api.New(api.Options{Store: brokenVerify{st}, Version: "test"})
	ts := &testServer{}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ts.mu.Lock()
		ts.auths = append(ts.auths, r.Header.Get("Authorization"))
		ts.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	ts.url = hs.URL
	return ts
}

// run executes chaperonectl against the test server with env as the only
// environment.
func run(t *testing.T, ts *testServer, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	if env == nil {
		env = map[string]string{"CHAPERONE_SERVER": ts.url}
	}
	code = execute(t.Context(), args, streams{out: &out, err: &errb}, func(k string) string { return env[k] })
	return code, out.String(), errb.String()
}

func TestSessionsList(t *testing.T) {
	ts := newTestServer(t)
	code, out, errs := run(t, ts, nil, "sessions", "list")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if got := strings.Fields(lines[0]); !slices.Equal(got, []string{"SESSION", "USER", "NAMESPACE", "POD", "STARTED", "EVENTS", "VERDICTS"}) {
		t.Errorf("header = %v", got)
	}
	want := [][]string{
		{"s2", "bob", "team-b", "agent-2", "2026-03-01", "10:00:00Z", "2", "deny"},
		{"s1", "alice", "team-a", "agent-1", "2026-03-01", "09:00:00Z", "5", "allow"},
		{"s-bad", "carol", "-", "-", "2026-03-01", "08:00:00Z", "2", "-"},
	}
	if len(lines) != 4 {
		t.Fatalf("table:\n%s", out)
	}
	for i, w := range want {
		if got := strings.Fields(lines[i+1]); !slices.Equal(got, w) {
			t.Errorf("row %d = %v, want %v", i, got, w)
		}
	}

	code, out, _ = run(t, ts, nil, "sessions", "list", "-o", "json", "--user", "alice")
	var page store.SessionPage
	if err := json.Unmarshal([]byte(out), &page); code != 0 || err != nil || len(page.Sessions) != 1 || page.Sessions[0].ID != "s1" || page.Sessions[0].Events != 5 {
		t.Errorf("json list: exit %d, %v: %s", code, err, out)
	}

	code, out, errs = run(t, ts, nil, "sessions", "list", "--limit", "1")
	if code != 0 || strings.Count(out, "\n") != 2 || !strings.Contains(errs, "--cursor") {
		t.Errorf("limit 1: exit %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = run(t, ts, nil, "sessions", "list", "--limit", "1", "--all", "-o", "json")
	page = store.SessionPage{}
	if err := json.Unmarshal([]byte(out), &page); code != 0 || err != nil || len(page.Sessions) != 3 || page.Next != "" {
		t.Errorf("--all: exit %d %v\n%s\n%s", code, err, out, errs)
	}
	for _, f := range [][]string{{"--verdict", "deny"}, {"--namespace", "team-b"}, {"--pod", "agent-2"}, {"--since", "30m", "--resource", "k8s:none"}} {
		_, out, _ = run(t, ts, nil, append([]string{"sessions", "list"}, f...)...)
		if f[0] != "--since" && !strings.Contains(out, "s2 ") || strings.Contains(out, "s1 ") {
			t.Errorf("list %v:\n%s", f, out)
		}
	}

	code, _, errs = run(t, ts, nil, "sessions", "list", "--limit", "5000")
	if code != 1 || !strings.Contains(errs, "limit") {
		t.Errorf("bad limit: exit %d: %s", code, errs)
	}
	code, _, errs = run(t, ts, nil, "sessions", "list", "--since", "yesterday")
	if code != 1 || !strings.Contains(errs, "since") {
		t.Errorf("bad since: exit %d: %s", code, errs)
	}
}

func TestSessionsShow(t *testing.T) {
	ts := newTestServer(t)
	code, out, errs := run(t, ts, nil, "sessions", "show", "s1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"Session:    s1", "User:       alice", "Events:     5", "Verdicts:   allow",
		"INDEX  TIME          KIND           SUMMARY",
		"1      09:00:00.000  session.start  session start: pod team-a/agent-1",
		"2      09:00:00.010  conn.open      http1 example.test (140.82.112.6:80) open",
		"3      09:00:00.020  http.request   GET http://example.test/path [allow]",
		"4      09:00:00.030  http.response  → 200 (12ms, 1.2 KiB)",
		"5      09:00:00.040  conn.close     closed ↑120 B ↓3.4 KiB 1.2s",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = run(t, ts, nil, "sessions", "show", "s1", "-o", "json")
	var v struct {
		Session store.Session
		Events  []*event.Event
	}
	if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil || v.Session.ID != "s1" || len(v.Events) != 5 {
		t.Errorf("show json: exit %d %v: %s", code, err, out)
	}
	code, _, errs = run(t, ts, nil, "sessions", "show", "nope")
	if code != 1 || !strings.Contains(errs, "not found") {
		t.Errorf("unknown session: exit %d: %s", code, errs)
	}
}

func TestSessionsReplay(t *testing.T) {
	ts := newTestServer(t)
	code, out, errs := run(t, ts, nil, "sessions", "replay", "s1", "--speed", "1000")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(out, "\n"+strings.Repeat(" ", 43)+"body: 1.2 KiB, not recorded\n") {
		t.Errorf("replay lacks the response's body detail:\n%s", out)
	}
	code, out, errs = run(t, ts, nil, "sessions", "replay", "s1", "--speed", "1000", "--compact")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "09:00:00.000  1 ") || !strings.HasSuffix(lines[4], "closed ↑120 B ↓3.4 KiB 1.2s") {
		t.Errorf("replay:\n%s", out)
	}
	code, out, _ = run(t, ts, nil, "sessions", "replay", "s1", "--speed", "1000", "--after", "3", "-o", "json")
	if code != 0 || strings.Count(out, "\n") != 2 || !strings.Contains(out, `"kind":"http.response"`) {
		t.Errorf("replay --after 3 json:\n%s", out)
	}
	for _, speed := range []string{"0", "-1", "2000"} {
		if code, _, errs = run(t, ts, nil, "sessions", "replay", "s1", "--speed", speed); code != 1 || !strings.Contains(errs, "speed") {
			t.Errorf("--speed %s: exit %d: %s", speed, code, errs)
		}
	}
}

func TestSessionsExport(t *testing.T) {
	ts := newTestServer(t)
	code, out, errs := run(t, ts, nil, "sessions", "export", "s1", "--format", "jsonl")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 {
		t.Fatalf("export has %d lines", len(lines))
	}
	for i, l := range lines {
		e, err := event.Decode([]byte(l))
		if err != nil || e.Chain == nil || e.Chain.Index != uint64(i+1) {
			t.Errorf("line %d: %v", i, err)
		}
	}
	for format, want := range map[string]string{
		"asciicast": "session s1 has no exec/attach streams",
		"csv":       `unknown format "csv"`,
	} {
		if code, _, errs := run(t, ts, nil, "sessions", "export", "s1", "--format", format); code != 1 || !strings.Contains(errs, want) {
			t.Errorf("--format %s: exit %d: %s", format, code, errs)
		}
	}
}

func TestSessionsVerify(t *testing.T) {
	ts := newTestServer(t)
	code, out, errs := run(t, ts, nil, "sessions", "verify", "s1")
	if code != 0 || !strings.HasPrefix(out, "chain ok: session s1, 5 events, head ") {
		t.Errorf("verify good: exit %d: %s %s", code, out, errs)
	}
	code, out, _ = run(t, ts, nil, "sessions", "verify", "s-bad")
	if code != 1 || !strings.Contains(out, "chain BROKEN: session s-bad at index 2") || !strings.Contains(out, "exec rm -rf / (pid 9)") {
		t.Errorf("verify broken: exit %d:\n%s", code, out)
	}
	code, out, _ = run(t, ts, nil, "sessions", "verify", "s-bad", "-o", "json")
	var res store.VerifyResult
	if err := json.Unmarshal([]byte(out), &res); code != 1 || err != nil || res.OK || res.FirstBad.Index != 2 {
		t.Errorf("verify broken json: exit %d %v: %s", code, err, out)
	}
}

func TestGlobalFlags(t *testing.T) {
	ts := newTestServer(t)
	// Flag beats environment; environment token is sent as a bearer token.
	code, _, errs := run(t, ts, map[string]string{"CHAPERONE_SERVER": "http://127.0.0.1:1", "CHAPERONE_TOKEN": "envtok"},
		"--server", ts.url, "sessions", "list")
	if code != 0 || ts.lastAuth() != "Bearer envtok" {
		t.Errorf("env token: exit %d auth %q: %s", code, ts.lastAuth(), errs)
	}
	tokFile := filepath.Join(t.TempDir(), "tok")
	if err := os.WriteFile(tokFile, []byte("filetok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errs = run(t, ts, nil, "--token-file", tokFile, "sessions", "list"); code != 0 || ts.lastAuth() != "Bearer filetok" {
		t.Errorf("token file: exit %d auth %q: %s", code, ts.lastAuth(), errs)
	}
	if code, _, _ = run(t, ts, nil, "--token", "flagtok", "sessions", "list"); code != 0 || ts.lastAuth() != "Bearer flagtok" {
		t.Errorf("token flag: auth %q", ts.lastAuth())
	}
	for _, args := range [][]string{
		{"-o", "yaml", "sessions", "list"},
		{"--server", "nonsense", "sessions", "list"},
		{"--token", "a", "--token-file", tokFile, "sessions", "list"},
		{"--token-file", filepath.Join(t.TempDir(), "missing"), "sessions", "list"},
		{"sessions", "show"},
	} {
		if code, _, errs := run(t, ts, nil, args...); code != 1 || errs == "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, errs)
		}
	}
}

// TestExtraCommands checks the hook the run and demo commands use.
func TestExtraCommands(t *testing.T) {
	ts := newTestServer(t)
	var out bytes.Buffer
	var server string
	code := execute(t.Context(), []string{"--server", ts.url, "hello"}, streams{out: &out, err: &out},
		func(string) string { return "" },
		func(g *globals) *cobraCommand {
			return &cobraCommand{Use: "hello", RunE: func(*cobraCommand, []string) error { server = g.Server; return nil }}
		})
	if code != 0 || server != ts.url {
		t.Errorf("extra command: exit %d, server %q: %s", code, server, out.String())
	}
}
