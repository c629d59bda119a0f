package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/approvals"
	"github.com/chaperone-dev/chaperone/pkg/client"
	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/localserver"
	"github.com/chaperone-dev/chaperone/pkg/policy"
	"github.com/chaperone-dev/chaperone/pkg/runner"
	"github.com/chaperone-dev/chaperone/sidecar/gate"
)

const approvalPolicy = `apiVersion: chaperone.dev/v1alpha1
kind: SessionPolicy
metadata:
  name: agents
spec:
  rules:
  - name: no-admin
    match: request.http.path == "/admin"
    action: Deny
    reason: agents stay out of the admin API
  - name: deploys-need-a-human
    match: request.http.path.startsWith("/deploy/")
    action: RequireApproval
    reason: deploys need a human
    approval:
      approverGroups: [sre]
      timeout: 4s
`

// slackStandIn stands in for Slack: it receives the Block Kit messages the
// server posts to its incoming-webhook URL and answers each pending one
// with answer (approve, deny, or "" to let it time out) by posting a
// correctly signed interactivity callback to the server, as Slack would
// when an approver clicks a button.
type slackStandIn struct {
	t        *testing.T
	secret   []byte
	callback string // the server's /callbacks/slack
	answer   func(summary string) string
	received atomic.Int32
	trigger  atomic.Int64
}

func (s *slackStandIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var m approvals.Message
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
		s.t.Errorf("slack stand-in: undecodable message: %v", err)
		return
	}
	w.WriteHeader(http.StatusOK)
	s.received.Add(1)
	for _, b := range m.Blocks {
		if b.Type != "actions" {
			continue
		}
		for _, e := range b.Elements {
			action := s.answer(m.Text)
			if e.ActionID != action || action == "" {
				continue
			}
			go s.click(action, e.Value)
		}
	}
}

// click posts a signed block_actions callback for the request id.
func (s *slackStandIn) click(action, id string) {
	payload, _ := json.Marshal(map[string]any{
		"type":       "block_actions",
		"user":       map[string]string{"id": "U0SRE", "username": "sre-oncall"},
		"trigger_id": fmt.Sprintf("trigger-%d", s.trigger.Add(1)),
		"actions": []map[string]string{{
			"action_id": action, "value": id, "action_ts": strconv.FormatInt(time.Now().UnixNano(), 10),
		}},
	})
	body := []byte(url.Values{"payload": {string(payload)}}.Encode())
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req, _ := http.NewRequest(http.MethodPost, s.callback, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set(approvals.HeaderTimestamp, ts)
	req.Header.Set(approvals.HeaderSignature, approvals.Sign(s.secret, ts, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Errorf("slack callback: %v", err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		s.t.Errorf("slack callback %s %s: %d %s", action, id, resp.StatusCode, b)
	}
}

// TestPolicyApprovals is issue 6's "show it": an agent session behind the
// real sidecar runs real curl; a rule holds its deploy requests; the
// server posts the Block Kit message to a Slack stand-in, which answers
// with a signed callback as an approver: approved → the original request
// completes; denied → curl reads the 403 with the reason; no answer →
// refused at the timeout. A Deny rule refuses at once. The session holds
// each decision, request and outcome in order, and the approvals.
func TestPolicyApprovals(t *testing.T) {
	secret := []byte("e2e-slack-signing-secret")
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "slack-secret")
	usersFile := filepath.Join(dir, "slack-users.json")
	if err := os.WriteFile(secretFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(usersFile, []byte(`{"U0SRE": {"email": "sre@example.com", "groups": ["sre"]}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	slack := &slackStandIn{t: t, secret: secret, answer: func(summary string) string {
		switch {
		case strings.Contains(summary, "/deploy/approve"):
			return approvals.ActionApprove
		case strings.Contains(summary, "/deploy/deny"):
			return approvals.ActionDeny
		}
		return ""
	}}
	hook := httptest.NewServer(slack)
	t.Cleanup(hook.Close)

	dataDir := filepath.Join(dir, "data")
	srv, err := localserver.Start(t.Context(), localserver.Options{
		Binary: bin("chaperone-server"), DataDir: dataDir,
		Args: []string{"--approval-webhook-url", hook.URL, "--slack-signing-secret-file", secretFile, "--slack-users-file", usersFile},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = srv.Stop()
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(dataDir, "server.log")); err == nil {
				t.Logf("server log:\n%s", b)
			}
		}
	})
	slack.callback = srv.Addrs.HTTP + "/callbacks/slack"
	cl, err := client.New(srv.Addrs.HTTP)
	if err != nil {
		t.Fatal(err)
	}

	ps, err := policy.Parse([]byte(approvalPolicy))
	if err != nil {
		t.Fatal(err)
	}
	set, err := policy.Compile(ps)
	if err != nil {
		t.Fatal(err)
	}
	sb := newSandbox(t)
	up := startEchoUpstream(t, sb.HostIP())
	script := `for p in /deploy/approve /deploy/deny /deploy/timeout /admin /ok; do
  echo "== $p"
  curl -sS -o - -w '\nstatus=%{http_code}\n' "http://$UP$p"
done
`
	var out, sidecarLog bytes.Buffer
	res, err := runner.Run(t.Context(), runner.Options{
		Command:     []string{"/bin/sh", "-c", script},
		Env:         []string{"UP=" + up.String()},
		NATSURL:     srv.Addrs.NATS,
		SidecarPath: bin("chaperone-sidecar"),
		User:        "agent-owner@example.com",
		Sandbox:     sb,
		Policy:      []byte(approvalPolicy),
		Policies:    cl,
		Token:       cl.WorkloadToken,
		Stdout:      &out,
		Stderr:      &out,
		SidecarLog:  &sidecarLog,
	})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("run: %v (exit %d)\n%s\nsidecar:\n%s", err, res.ExitCode, out.String(), sidecarLog.String())
	}
	results := map[string]string{}
	for _, part := range strings.Split(out.String(), "== ")[1:] {
		path, rest, _ := strings.Cut(part, "\n")
		results[path] = rest
	}
	for path, want := range map[string][]string{
		"/deploy/approve": {"status=200", "/deploy/approve"},
		"/deploy/deny":    {"status=403", `"rule":"deploys-need-a-human"`, "denied", "sre@example.com", "deploys need a human"},
		"/deploy/timeout": {"status=403", "no approval before the timeout"},
		"/admin":          {"status=403", `"rule":"no-admin"`, "agents stay out of the admin API"},
		"/ok":             {"status=200"},
	} {
		for _, w := range want {
			if !strings.Contains(results[path], w) {
				t.Errorf("%s: curl output lacks %q:\n%s", path, w, results[path])
			}
		}
	}
	if slack.received.Load() < 3 {
		t.Errorf("the Slack stand-in received %d messages, want at least 3", slack.received.Load())
	}

	evs := waitEnded(t, cl, res.Session)
	verifyChain(t, cl, res.Session)
	if t.Failed() {
		dumpEvents(t, evs)
	}
	checkGatedOrder(t, evs, map[string]string{
		"/deploy/approve": gate.VerdictApproved,
		"/deploy/deny":    gate.VerdictDenied,
		"/deploy/timeout": gate.VerdictDenied,
		"/admin":          gate.VerdictDeny,
		"/ok":             gate.VerdictAllow,
	})
	decided := map[string]int{}
	loaded := false
	for _, e := range evs {
		switch e.Kind {
		case event.KindApprovalDecided:
			decided[e.ApprovalDecided.Decision]++
		case event.KindPolicyLoaded:
			loaded = loaded || (e.PolicyLoaded.Source == gate.SourceSession && e.PolicyLoaded.Hash == set.Hash())
		}
	}
	if decided[approvals.StateApproved] != 1 || decided[approvals.StateDenied] != 1 || decided[approvals.StateExpired] != 1 {
		t.Errorf("approval.decided events: %v, want one approved, denied and expired", decided)
	}
	if !loaded {
		t.Errorf("no policy.loaded event for the session's set %s", set.Hash())
	}
}

// checkGatedOrder checks, for each path, that the session holds its
// policy.decision, then its http.request (the one the decision cites,
// with the final verdict), then its http.response, in that order.
func checkGatedOrder(t *testing.T, evs []*event.Event, verdicts map[string]string) {
	t.Helper()
	index := map[string]int{}
	for i, e := range evs {
		index[e.ID] = i
	}
	for path, verdict := range verdicts {
		reqAt := -1
		for i, e := range evs {
			if e.Kind == event.KindHTTPRequest && strings.HasSuffix(e.HTTPRequest.URL, path) {
				reqAt = i
			}
		}
		if reqAt < 0 {
			t.Errorf("%s: no http.request recorded", path)
			continue
		}
		req := evs[reqAt]
		if req.Verdict != verdict {
			t.Errorf("%s: request verdict %q, want %q", path, req.Verdict, verdict)
		}
		decAt := -1
		for i, e := range evs {
			if e.Kind == event.KindPolicyDecision && e.PolicyDecision.Subject == req.ID {
				decAt = i
			}
		}
		if decAt < 0 || decAt > reqAt {
			t.Errorf("%s: decision at %d, request at %d: want a decision citing the request before it", path, decAt, reqAt)
		}
		respAt := -1
		for i, e := range evs {
			if e.Kind == event.KindHTTPResponse && e.Conn == req.Conn && e.HTTPResponse.Stream == req.HTTPRequest.Stream {
				respAt = i
			}
		}
		if respAt < reqAt {
			t.Errorf("%s: response at %d, request at %d", path, respAt, reqAt)
		}
	}
}
