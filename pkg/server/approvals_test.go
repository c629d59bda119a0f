package server

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/approvals"
	"github.com/chaperone-dev/chaperone/pkg/event"
)

// TestApprovalsWired runs the server with a webhook and a signing secret,
// holds an operation over NATS as a sidecar would, approves it over the
// API, and finds the approval and its events after a restart.
func TestApprovalsWired(t *testing.T) {
	posted := make(chan string, 4)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		posted <- string(b)
	}))
	defer hook.Close()
	dir := t.TempDir()
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0",
		ApprovalWebhookURL: hook.URL, SlackSigningSecretFile: secret, ShutdownTimeout: 30 * time.Second}
	s := start(t, cfg)

	// Asked the way a sidecar asks: with the token of its session.
	nc, err := workloadConn(t, s.addrs.NATS, "sess-wired", mintToken(t, s.addrs.HTTP, "sess-wired"))
	if err != nil {
		t.Fatal(err)
	}
	req := approvals.Request{ID: "req-wired", Session: "sess-wired", Summary: "drop table users",
		ApproverGroups: []string{"dba"}, Timeout: time.Minute, Requester: event.Identity{User: "dev"}}
	got := make(chan approvals.Decision, 1)
	go func() {
		d, err := approvals.Ask(context.Background(), nc, req)
		if err != nil {
			t.Error(err)
		}
		got <- d
	}()
	select {
	case m := <-posted:
		if !strings.Contains(m, `"action_id":"approve"`) || !strings.Contains(m, "drop table users") {
			t.Fatalf("message %s", m)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no webhook post")
	}
	code, body := get(t, s.addrs.HTTP+"/api/v1/approvals?state=pending")
	if code != 200 || !strings.Contains(body, "req-wired") {
		t.Fatalf("list: %d %s", code, body)
	}
	resp, err := http.Post(s.addrs.HTTP+"/api/v1/approvals/req-wired/approve", "application/json", strings.NewReader(`{"reason":"fine"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("approve: %d", resp.StatusCode)
	}
	select {
	case d := <-got:
		if !d.Allowed() {
			t.Fatalf("decision %+v", d)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no decision")
	}
	// The callback route is served and checks signatures.
	resp, err = http.Post(s.addrs.HTTP+"/callbacks/slack", "application/x-www-form-urlencoded", strings.NewReader("payload=%7B%7D"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unsigned callback: %d", resp.StatusCode)
	}
	s.stop(t)

	// The old file would name the stopped server.
	if err := os.Remove(filepath.Join(dir, AddressesFile)); err != nil {
		t.Fatal(err)
	}
	s = start(t, cfg)
	defer s.stop(t)
	code, body = get(t, s.addrs.HTTP+"/api/v1/approvals?state=approved")
	if code != 200 || !strings.Contains(body, "req-wired") {
		t.Fatalf("after restart: %d %s", code, body)
	}
	code, body = get(t, s.addrs.HTTP+"/api/v1/sessions/sess-wired/events")
	if code != 200 || !strings.Contains(body, `"approval.requested"`) || !strings.Contains(body, `"approval.decided"`) {
		t.Fatalf("events: %d %s", code, body)
	}
}
