package server

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chaperone-dev/chaperone/pkg/client"
	"github.com/chaperone-dev/chaperone/pkg/natsbus/natstest"
	"github.com/chaperone-dev/chaperone/pkg/policy"
)

const goodPolicy = `apiVersion: chaperone.dev/v1alpha1
kind: SessionPolicy
metadata:
  name: agents
spec:
  rules:
  - name: no-deletes
    match: request.k8s.verb == "delete"
    action: Deny
`

// TestStartPolicy distributes --policy-file through the real bucket,
// refuses a file whose rule does not compile (naming policy, rule and the
// CEL error) and keeps the last good set when an edit breaks it.
func TestStartPolicy(t *testing.T) {
	ns := natstest.Start(t)
	ctx := t.Context()
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	bad := strings.Replace(goodPolicy, `request.k8s.verb == "delete"`, `request.k8s.verbs == "delete"`, 1)
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := startPolicy(ctx, Config{PolicyFile: path}, ns.JS, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "no-deletes") || !strings.Contains(err.Error(), "verbs") {
		t.Fatalf("bad policy: err = %v", err)
	}
	kv, err := policy.OpenBucket(ctx, ns.JS)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, policy.KeyCluster); err == nil {
		t.Fatal("a refused policy was distributed")
	}

	if err := os.WriteFile(path, []byte(goodPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stop, err := startPolicy(ctx, Config{PolicyFile: path}, ns.JS, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stop(ctx) }()
	e, err := kv.Get(ctx, policy.KeyCluster)
	if err != nil {
		t.Fatal(err)
	}
	set, err := policy.Unmarshal(e.Value())
	if err != nil || set.Policies()[0].Name != "agents" {
		t.Fatalf("distributed %v, %v", set, err)
	}
	// A broken edit is refused; the good set stays.
	if err := os.WriteFile(path, []byte(bad+"\n# edit\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(policyPollEvery + 500*time.Millisecond)
	e2, err := kv.Get(ctx, policy.KeyCluster)
	if err != nil || e2.Revision() != e.Revision() {
		t.Fatalf("after a bad edit: revision %v, %v", e2, err)
	}
	// Without a file the policy is withdrawn.
	if _, _, err := startPolicy(ctx, Config{}, ns.JS, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, policy.KeyCluster); err == nil {
		t.Error("policy still distributed without a file")
	}
}

// chaperonectl run --policy goes through the API: the server compiles the
// YAML, refuses what does not compile with the rule and error, and alone
// writes the session's key of the bucket.
func TestSessionPolicyAPI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s := start(t, Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0"})
	defer s.stop(t)
	ctx := t.Context()
	cl, err := client.New(s.addrs.HTTP)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := policy.OpenBucket(ctx, jsFor(t, s.addrs.NATS))
	if err != nil {
		t.Fatal(err)
	}
	key, err := policy.SessionKey("run-1")
	if err != nil {
		t.Fatal(err)
	}

	bad := strings.Replace(goodPolicy, `request.k8s.verb == "delete"`, `request.k8s.verbs == "delete"`, 1)
	if _, err := cl.PutSessionPolicy(ctx, "run-1", []byte(bad)); err == nil || !strings.Contains(err.Error(), "verbs") {
		t.Fatalf("a policy that does not compile: %v", err)
	}
	if _, err := kv.Get(ctx, key); err == nil {
		t.Fatal("a refused session policy was distributed")
	}
	if _, err := cl.PutSessionPolicy(ctx, "a.b", []byte(goodPolicy)); err == nil {
		t.Fatal("a bad session id was accepted")
	}

	hash, err := cl.PutSessionPolicy(ctx, "run-1", []byte(goodPolicy))
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	set, err := policy.Unmarshal(e.Value())
	if err != nil || set.Hash() != hash {
		t.Fatalf("distributed %v (%v), API said hash %s", set, err, hash)
	}

	if err := cl.DeleteSessionPolicy(ctx, "run-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, key); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("session policy after DELETE: %v, want key not found", err)
	}
}
