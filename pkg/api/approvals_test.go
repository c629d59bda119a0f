package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/natsbus/natstest"

	"github.com/chaperone-dev/chaperone/pkg/approvals"
	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/principal"
	"github.com/chaperone-dev/chaperone/pkg/store/sqlite"
)

// tokens is a TokenVerifier over a fixed table of tokens.
type tokens map[string]principal.Principal

func (tk tokens) Verify(_ context.Context, token string) (principal.Principal, error) {
	p, ok := tk[token]
	if !ok {
		return principal.Principal{}, errors.New("unknown token")
	}
	return p, nil
}

var approvalSecret = []byte("approval-test-secret")

// newApprovalsAPI serves the API over a real approvals service (in-process
// NATS JetStream, SQLite) with two pending requests.
func newApprovalsAPI(t *testing.T, verifier TokenVerifier) (*httptest.Server, *approvals.Service) {
	t.Helper()
	ctx := t.Context()
	ns := natstest.Start(t)
	nc, js := ns.Conn, ns.JS
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	svc, err := approvals.New(ctx, approvals.Options{NATS: nc, JetStream: js, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"req-1", "req-2"} {
		if _, err := svc.Submit(ctx, approvals.Request{ID: id, Session: "sess-1", Summary: "delete secret " + id,
			ApproverGroups: []string{"sre"}, Timeout: time.Hour, Requester: event.Identity{User: "dev@example.com"}}); err != nil {
			t.Fatal(err)
		}
	}
	h := New(Options{Store: st, Approvals: svc, Verifier: verifier, LocalMode: verifier == nil,
		SlackCallback: svc.Callback(approvals.CallbackOptions{Secret: approvalSecret,
			Users: map[string]approvals.SlackUser{"UANN": {Email: "ann@example.com", Groups: []string{"sre"}}}}),
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, svc
}

func do(t *testing.T, method, u, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestApprovalsLocalMode(t *testing.T) {
	srv, svc := newApprovalsAPI(t, nil)
	code, body := do(t, "GET", srv.URL+"/api/v1/approvals?state=pending", "", "")
	var list ApprovalList
	if code != 200 || json.Unmarshal([]byte(body), &list) != nil || len(list.Approvals) != 2 || list.Approvals[0].ID != "req-1" {
		t.Fatalf("list: %d %s", code, body)
	}
	code, body = do(t, "POST", srv.URL+"/api/v1/approvals/req-1/approve", "", `{"reason":"looks fine"}`)
	var a approvals.Approval
	if code != 200 || json.Unmarshal([]byte(body), &a) != nil || a.State != approvals.StateApproved || a.Votes[0].Approver != principal.Local().Name() {
		t.Fatalf("approve: %d %s", code, body)
	}
	if code, body = do(t, "POST", srv.URL+"/api/v1/approvals/req-2/deny", "", ""); code != 200 || !strings.Contains(body, `"state":"denied"`) {
		t.Fatalf("deny: %d %s", code, body)
	}
	if code, body = do(t, "GET", srv.URL+"/api/v1/approvals?state=pending", "", ""); code != 200 || !strings.Contains(body, `"approvals":[]`) {
		t.Fatalf("list after: %d %s", code, body)
	}
	if code, _ = do(t, "GET", srv.URL+"/api/v1/approvals", "", ""); code != 200 {
		t.Fatalf("list all: %d", code)
	}
	if got, _ := svc.List(t.Context(), ""); len(got) != 2 {
		t.Fatalf("all: %d", len(got))
	}
}

func TestApprovalsRefusals(t *testing.T) {
	tk := tokens{
		"ann": {Subject: "ann", Email: "ann@example.com", Groups: []string{"sre"}, Roles: []principal.Role{principal.RoleApprover}},
		"dev": {Subject: "dev", Email: "dev@example.com", Groups: []string{"sre"}, Roles: []principal.Role{principal.RoleApprover}},
		"eve": {Subject: "eve", Email: "eve@example.com", Groups: []string{"marketing"}, Roles: []principal.Role{principal.RoleApprover}},
	}
	srv, svc := newApprovalsAPI(t, tk)
	cases := []struct {
		name, method, path, token, body string
		status                          int
		want                            string
	}{
		{"no token", "GET", "/api/v1/approvals", "", "", 401, "unauthorized"},
		{"bad state", "GET", "/api/v1/approvals?state=maybe", "ann", "", 400, "state"},
		{"unknown id", "POST", "/api/v1/approvals/req-9/approve", "ann", "", 404, "not found"},
		{"bad id", "POST", "/api/v1/approvals/a.b/approve", "ann", "", 404, "not found"},
		{"bad body", "POST", "/api/v1/approvals/req-1/approve", "ann", "{", 400, "body"},
		{"requester approving", "POST", "/api/v1/approvals/req-1/approve", "dev", "", 403, "requester"},
		{"outside the groups", "POST", "/api/v1/approvals/req-1/approve", "eve", "", 403, "not an approver"},
		{"outside the groups denying", "POST", "/api/v1/approvals/req-1/deny", "eve", "", 403, "not an approver"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body := do(t, tc.method, srv.URL+tc.path, tc.token, tc.body)
			if code != tc.status || !strings.Contains(body, tc.want) {
				t.Fatalf("got %d %s, want %d with %q", code, body, tc.status, tc.want)
			}
			a, err := svc.Get(t.Context(), "req-1")
			if err != nil || a.State != approvals.StatePending || len(a.Votes) != 0 {
				t.Fatalf("state changed: %+v %v", a, err)
			}
		})
	}
	if code, body := do(t, "POST", srv.URL+"/api/v1/approvals/req-1/approve", "ann", ""); code != 200 {
		t.Fatalf("approve: %d %s", code, body)
	}
	if code, body := do(t, "POST", srv.URL+"/api/v1/approvals/req-1/deny", "ann", ""); code != 409 || !strings.Contains(body, "already decided") {
		t.Fatalf("second answer: %d %s", code, body)
	}
}

// TestSlackCallbackRoute checks the callback is reached without a bearer
// token and checks its own signature.
func TestSlackCallbackRoute(t *testing.T) {
	srv, svc := newApprovalsAPI(t, tokens{})
	pl, _ := json.Marshal(map[string]any{"type": "block_actions", "user": map[string]string{"id": "UANN"},
		"actions": []map[string]string{{"action_id": approvals.ActionApprove, "value": "req-2", "action_ts": "1.2"}}})
	body := url.Values{"payload": {string(pl)}}.Encode()
	send := func(sig string) int {
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		if sig == "" {
			sig = approvals.Sign(approvalSecret, ts, []byte(body))
		}
		req, _ := http.NewRequestWithContext(t.Context(), "POST", srv.URL+"/callbacks/slack", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set(approvals.HeaderTimestamp, ts)
		req.Header.Set(approvals.HeaderSignature, sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := send("v0=00"); code != 401 {
		t.Fatalf("forged: %d", code)
	}
	if code := send(""); code != 200 {
		t.Fatalf("signed: %d", code)
	}
	if a, _ := svc.Get(t.Context(), "req-2"); a.State != approvals.StateApproved {
		t.Fatalf("state %s", a.State)
	}
}
