package approvals

import (
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/principal"
)

type askResult struct {
	d   Decision
	err error
}

func (f *fixture) ask(t *testing.T, req Request) <-chan askResult {
	ch := make(chan askResult, 1)
	go func() {
		d, err := Ask(t.Context(), f.nc, req)
		ch <- askResult{d, err}
	}()
	return ch
}

func wait(t *testing.T, ch <-chan askResult) Decision {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("ask: %v", r.err)
		}
		return r.d
	case <-time.After(20 * time.Second):
		t.Fatal("no decision delivered")
	}
	return Decision{}
}

func TestSlackApproveFlow(t *testing.T) {
	f := newFixture(t)
	f.run(t)
	req := testRequest("req-approve")
	res := f.ask(t, req)

	m := f.webhook.next(t)
	if len(m.Blocks) != 3 || m.Blocks[0].Type != "section" || m.Blocks[1].Type != "actions" {
		t.Fatalf("blocks: %+v", m.Blocks)
	}
	var fields []string
	for _, fl := range m.Blocks[0].Fields {
		fields = append(fields, fl.Text)
	}
	all := strings.Join(fields, "\n")
	for _, want := range []string{"*What:*\nDELETE secrets/db", "*Who:*\nagent", "*Where:*\nkubernetes prod", "*Rule:*\nsecrets-need-approval"} {
		if !strings.Contains(all, want) {
			t.Errorf("section fields %q lack %q", all, want)
		}
	}
	btn := m.Blocks[1].Elements
	if len(btn) != 2 || btn[0].ActionID != ActionApprove || btn[1].ActionID != ActionDeny || btn[0].Value != req.ID || btn[1].Value != req.ID {
		t.Fatalf("buttons: %+v", btn)
	}

	code, body := f.callback(t, payload("UANN", ActionApprove, req.ID, "1.1", f.response.srv.URL), f.clock.Now(), "")
	if code != 200 {
		t.Fatalf("callback: %d %s", code, body)
	}
	up := f.response.next(t)
	if !up.ReplaceOriginal || slices.ContainsFunc(up.Blocks, func(b Block) bool { return b.Type == "actions" }) ||
		!strings.Contains(up.Blocks[len(up.Blocks)-1].Elements[0].Text.(string), "ann@example.com") {
		t.Fatalf("updated message: %+v", up)
	}

	d := wait(t, res)
	if !d.Allowed() || !slices.Equal(d.Approvers, []string{"ann@example.com"}) {
		t.Fatalf("decision %+v", d)
	}
	evs := f.sessionEvents(t, req.Session)
	if len(evs) != 2 || evs[0].Kind != event.KindApprovalRequested || evs[1].Kind != event.KindApprovalDecided {
		t.Fatalf("events %v", kinds(evs))
	}
	if evs[1].Source != event.SourceServer || evs[1].ApprovalDecided.Decision != StateApproved || evs[1].Verdict != "approved" {
		t.Fatalf("decided event %+v", evs[1])
	}
	if n := testutil.ToFloat64(f.svc.metrics.decisions.WithLabelValues(StateApproved)); n != 1 {
		t.Errorf("approved decisions metric %v", n)
	}
	v, err := f.store.Verify(t.Context(), req.Session)
	if err != nil || !v.OK {
		t.Fatalf("verify %+v %v", v, err)
	}
	// A sidecar that asks again (after a restart) gets the stored answer.
	if d2 := wait(t, f.ask(t, req)); !d2.Allowed() {
		t.Fatalf("re-ask: %+v", d2)
	}
	if n := len(f.sessionEvents(t, req.Session)); n != 2 {
		t.Fatalf("re-ask recorded again: %d events", n)
	}
}

func kinds(evs []*event.Event) []event.Kind {
	var out []event.Kind
	for _, e := range evs {
		out = append(out, e.Kind)
	}
	return out
}

func TestDenyViaSlackAndAPI(t *testing.T) {
	f := newFixture(t)
	f.run(t)
	req := testRequest("req-deny")
	res := f.ask(t, req)
	f.webhook.next(t)
	code, body := f.callback(t, payload("UBOB", ActionDeny, req.ID, "2.1", f.response.srv.URL), f.clock.Now(), "")
	if code != 200 {
		t.Fatalf("callback: %d %s", code, body)
	}
	if d := wait(t, res); d.Allowed() || d.Decision != StateDenied {
		t.Fatalf("decision %+v", d)
	}

	req2 := testRequest("req-deny-api")
	res2 := f.ask(t, req2)
	f.webhook.next(t)
	a, err := f.svc.Decide(t.Context(), req2.ID, principal.Principal{Subject: "carol", Groups: []string{"sre"}}, false, "not now", "api")
	if err != nil || a.State != StateDenied {
		t.Fatalf("decide: %+v %v", a, err)
	}
	if d := wait(t, res2); d.Decision != StateDenied || d.Reason != "not now" {
		t.Fatalf("decision %+v", d)
	}
	if _, err := f.svc.Decide(t.Context(), req2.ID, principal.Principal{Subject: "dan", Groups: []string{"sre"}}, true, "", "api"); !errors.Is(err, ErrDecided) {
		t.Fatalf("decide after decision: %v", err)
	}
}

func TestExpiry(t *testing.T) {
	f := newFixture(t)
	f.run(t)
	req := testRequest("req-expire")
	req.Timeout = time.Minute
	res := f.ask(t, req)
	f.webhook.next(t)
	if n, err := f.svc.ExpireDue(t.Context()); n != 0 || err != nil {
		t.Fatalf("expired early: %d %v", n, err)
	}
	f.clock.Add(61 * time.Second)
	if n, err := f.svc.ExpireDue(t.Context()); n != 1 || err != nil {
		t.Fatalf("expire: %d %v", n, err)
	}
	if d := wait(t, res); d.Decision != StateExpired || d.Allowed() {
		t.Fatalf("decision %+v", d)
	}
	evs := f.sessionEvents(t, req.Session)
	if last := evs[len(evs)-1]; last.Kind != event.KindApprovalDecided || last.ApprovalDecided.Decision != StateExpired || last.Verdict != "denied" {
		t.Fatalf("last event %+v", last)
	}
}

func TestMinApprovalsTwo(t *testing.T) {
	f := newFixture(t)
	f.run(t)
	req := testRequest("req-two")
	req.MinApprovals = 2
	res := f.ask(t, req)
	f.webhook.next(t)
	if code, body := f.callback(t, payload("UANN", ActionApprove, req.ID, "3.1", f.response.srv.URL), f.clock.Now(), ""); code != 200 {
		t.Fatalf("first: %d %s", code, body)
	}
	if up := f.response.next(t); up.Blocks[1].Type != "actions" {
		t.Fatalf("still pending message lost its buttons: %+v", up)
	}
	// The same person again counts once.
	if code, _ := f.callback(t, payload("UANN", ActionApprove, req.ID, "3.2", f.response.srv.URL), f.clock.Now(), ""); code != 409 {
		t.Fatalf("second vote by ann: %d", code)
	}
	if a, _ := f.svc.Get(t.Context(), req.ID); a.State != StatePending || len(a.Votes) != 1 {
		t.Fatalf("after one approval: %+v", a)
	}
	if code, body := f.callback(t, payload("UBOB", ActionApprove, req.ID, "3.3", f.response.srv.URL), f.clock.Now(), ""); code != 200 {
		t.Fatalf("second: %d %s", code, body)
	}
	d := wait(t, res)
	if !d.Allowed() || !slices.Equal(d.Approvers, []string{"ann@example.com", "bob@example.com"}) {
		t.Fatalf("decision %+v", d)
	}
}

func TestBadCallbacks(t *testing.T) {
	f := newFixture(t)
	f.run(t)
	req := testRequest("req-bad")
	if _, err := f.svc.Submit(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	now := f.clock.Now()
	good := payload("UANN", ActionApprove, req.ID, "9.9", f.response.srv.URL)
	// Spend one callback on another request so its replay can be tried.
	other := testRequest("req-other")
	if _, err := f.svc.Submit(t.Context(), other); err != nil {
		t.Fatal(err)
	}
	used := payload("UANN", ActionDeny, other.ID, "8.8", "")
	if code, body := f.callback(t, used, now, ""); code != 200 {
		t.Fatalf("setup: %d %s", code, body)
	}
	raw := func(s string) []byte { return []byte(s) }
	cases := []struct {
		name   string
		body   []byte
		at     time.Time
		sig    string
		status int
		want   string
	}{
		{"forged signature", good, now, "v0=" + strings.Repeat("0", 64), 401, "bad signature"},
		{"signed with another secret", good, now, Sign([]byte("other"), "0", good), 401, "bad signature"},
		{"stale timestamp", good, now.Add(-6 * time.Minute), "", 401, "stale"},
		{"future timestamp", good, now.Add(10 * time.Minute), "", 401, "stale"},
		{"replay", used, now, "", 409, "already used"},
		{"unknown request", payload("UANN", ActionApprove, "req-nope", "7.1", ""), now, "", 404, "unknown approval"},
		{"requester approving", payload("UDEV", ActionApprove, req.ID, "7.2", ""), now, "", 403, "requester"},
		{"approver outside the groups", payload("UEVE", ActionApprove, req.ID, "7.3", ""), now, "", 403, "not an approver"},
		{"unmapped user", payload("UNOBODY", ActionApprove, req.ID, "7.4", ""), now, "", 403, "not mapped"},
		{"malformed payload", raw("payload=%7Bnot+json"), now, "", 400, "malformed payload"},
		{"no payload", raw("foo=bar"), now, "", 400, "no payload"},
		{"wrong type", raw(`payload={"type":"view_submission"}`), now, "", 400, "block_actions"},
		{"unknown action", payload("UANN", "launch", req.ID, "7.5", ""), now, "", 400, "unknown action"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body := f.callback(t, tc.body, tc.at, tc.sig)
			if code != tc.status || !strings.Contains(body, tc.want) {
				t.Fatalf("got %d %s, want %d with %q", code, body, tc.status, tc.want)
			}
			var e struct{ Error string }
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == "" {
				t.Fatalf("not a JSON error: %s", body)
			}
			a, err := f.svc.Get(t.Context(), req.ID)
			if err != nil || a.State != StatePending || len(a.Votes) != 0 {
				t.Fatalf("state changed: %+v %v", a, err)
			}
		})
	}
	byStatus := map[int]int{}
	for _, tc := range cases {
		byStatus[tc.status]++
	}
	for status, n := range byStatus {
		if got := testutil.ToFloat64(f.svc.metrics.refusals.WithLabelValues(strconv.Itoa(status))); int(got) != n {
			t.Errorf("refusals metric for %d: %v, want %d", status, got, n)
		}
	}
	if evs := f.sessionEvents(t, req.Session); len(evs) != 3 { // two requested, one decided (the setup)
		t.Fatalf("events %v", kinds(evs))
	}
	// No secret configured: everything is refused.
	bare := f.svc.Callback(CallbackOptions{})
	f.cb = bare
	if code, _ := f.callback(t, good, now, ""); code != 401 {
		t.Fatalf("without a secret: %d", code)
	}
}

func TestSurvivesRestart(t *testing.T) {
	f := newFixture(t)
	req := testRequest("req-restart")
	if _, err := f.svc.Submit(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	f.webhook.next(t)
	// A new service (a restarted server) finds the pending approval.
	f.svc = f.service(t)
	f.run(t)
	list, err := f.svc.List(t.Context(), StatePending)
	if err != nil || len(list) != 1 || list[0].ID != req.ID {
		t.Fatalf("pending after restart: %+v %v", list, err)
	}
	res := f.ask(t, req)
	if _, err := f.svc.Decide(t.Context(), req.ID, principal.Local(), true, "", "api"); err != nil {
		t.Fatal(err)
	}
	if d := wait(t, res); !d.Allowed() {
		t.Fatalf("decision %+v", d)
	}
}

func TestSubmitRefusesBadRequests(t *testing.T) {
	f := newFixture(t)
	for name, mut := range map[string]func(*Request){
		"bad id":      func(r *Request) { r.ID = "a.b" },
		"bad session": func(r *Request) { r.Session = "s>" },
		"no summary":  func(r *Request) { r.Summary = "" },
		"no timeout":  func(r *Request) { r.Timeout = 0 },
	} {
		r := testRequest("x")
		mut(&r)
		if _, err := f.svc.Submit(t.Context(), r); !errors.Is(err, ErrInvalid) && !errors.Is(err, event.ErrInvalidSession) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
