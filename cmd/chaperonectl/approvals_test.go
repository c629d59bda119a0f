package main

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/natsbus/natstest"

	"github.com/chaperone-dev/chaperone/pkg/api"
	"github.com/chaperone-dev/chaperone/pkg/approvals"
	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/store/sqlite"
)

// newApprovalsServer serves a local-mode API over a real approvals service
// (in-process NATS JetStream, SQLite) with three pending requests.
func newApprovalsServer(t *testing.T) (string, *approvals.Service) {
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
	for i, id := range []string{"req-a", "req-b", "req-c"} {
		if _, err := svc.Submit(ctx, approvals.Request{ID: id, Session: "sess-1", Rule: "secrets", Summary: "delete secret " + id,
			ApproverGroups: []string{"sre"}, MinApprovals: 1 + i/2, Timeout: time.Hour,
			Requester: event.Identity{User: "dev@example.com"}, Time: t0.Add(time.Duration(i) * time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(api.New(api.Options{Store: st, Approvals: svc, LocalMode: true}))
	t.Cleanup(srv.Close)
	return srv.URL, svc
}

func ctl(t *testing.T, url string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := execute(t.Context(), args, streams{out: &out, err: &errb}, func(k string) string {
		if k == envServer {
			return url
		}
		return ""
	})
	return code, out.String(), errb.String()
}

func TestApprovalsCLI(t *testing.T) {
	url, svc := newApprovalsServer(t)

	code, out, errs := ctl(t, url, "approvals", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 4 || !slices.Equal(strings.Fields(lines[0])[:4], []string{"ID", "STATE", "SESSION", "RULE"}) ||
		!strings.HasPrefix(lines[1], "req-a ") || !strings.Contains(lines[3], "0/2") {
		t.Fatalf("list: exit %d\n%s\n%s", code, out, errs)
	}

	if code, out, errs = ctl(t, url, "approvals", "approve", "req-a", "--reason", "ok"); code != 0 || out != "req-a: approved\n" {
		t.Fatalf("approve: exit %d %q %s", code, out, errs)
	}
	if code, out, errs = ctl(t, url, "approvals", "deny", "req-b"); code != 0 || out != "req-b: denied\n" {
		t.Fatalf("deny: exit %d %q %s", code, out, errs)
	}
	if code, out, errs = ctl(t, url, "approvals", "approve", "req-c"); code != 0 || out != "req-c: pending, 1 of 2 approvals\n" {
		t.Fatalf("first of two: exit %d %q %s", code, out, errs)
	}
	// The same person twice is refused, and says why.
	if code, _, errs = ctl(t, url, "approvals", "approve", "req-c"); code == 0 || !strings.Contains(errs, "already answered") {
		t.Fatalf("second by the same person: exit %d %s", code, errs)
	}
	if code, _, errs = ctl(t, url, "approvals", "approve", "req-a"); code == 0 || !strings.Contains(errs, "already decided") {
		t.Fatalf("decided: exit %d %s", code, errs)
	}
	if code, _, errs = ctl(t, url, "approvals", "deny", "nope"); code == 0 || !strings.Contains(errs, "not found") {
		t.Fatalf("unknown: exit %d %s", code, errs)
	}

	code, out, _ = ctl(t, url, "approvals", "list", "--state", "all", "-o", "json")
	var list []approvals.Approval
	if err := json.Unmarshal([]byte(out), &list); code != 0 || err != nil || len(list) != 3 {
		t.Fatalf("json list: exit %d %v\n%s", code, err, out)
	}
	states := []string{list[0].State, list[1].State, list[2].State}
	if !slices.Equal(states, []string{"approved", "denied", "pending"}) || list[0].Votes[0].Reason != "ok" {
		t.Fatalf("states %v, %+v", states, list[0].Votes)
	}
	if code, _, errs = ctl(t, url, "approvals", "list", "--state", "maybe"); code == 0 || !strings.Contains(errs, "--state") {
		t.Fatalf("bad state: exit %d %s", code, errs)
	}
	if got, _ := svc.List(t.Context(), approvals.StatePending); len(got) != 1 {
		t.Fatalf("pending left: %d", len(got))
	}
}
