package gate

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/natsbus/natstest"
	"github.com/chaperone-dev/chaperone/pkg/policy"
	"github.com/chaperone-dev/chaperone/pkg/policy/v1alpha1"
)

func compileYAML(t *testing.T, name, match string) *policy.Set {
	t.Helper()
	ps, err := policy.Parse([]byte(`apiVersion: chaperone.dev/v1alpha1
kind: SessionPolicy
metadata:
  name: ` + name + `
spec:
  rules:
  - name: r
    match: ` + match + `
    action: Deny
`))
	if err != nil {
		t.Fatal(err)
	}
	s, err := policy.Compile(ps)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestWatch distributes sets through a real JetStream bucket: the cluster
// set, a session's own set over it, a bundle that does not compile (kept
// out), the withdrawal of the session's set, and the cache a restart
// without the server starts from.
func TestWatch(t *testing.T) {
	ns := natstest.Start(t)
	ctx := t.Context()
	kv, err := policy.OpenBucket(ctx, ns.JS)
	if err != nil {
		t.Fatal(err)
	}
	cluster := compileYAML(t, "cluster", `request.http.path == "/c"`)
	if _, err := policy.Put(ctx, kv, policy.KeyCluster, cluster); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var evs []*event.PolicyLoaded
	dir := t.TempDir()
	wo := WatchOptions{Conn: ns.Conn, Session: "s-1", CacheDir: dir, Retry: 50 * time.Millisecond,
		Loaded: func(pl *event.PolicyLoaded) { mu.Lock(); evs = append(evs, pl); mu.Unlock() }}
	g := New(Options{Session: "s-1"})
	first := make(chan struct{})
	go g.Watch(ctx, wo, first)
	<-first
	if g.Hash() != cluster.Hash() {
		t.Fatalf("hash %q, want the cluster's", g.Hash())
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	own := compileYAML(t, "own", `request.http.path == "/o"`)
	key, _ := policy.SessionKey("s-1")
	if _, err := policy.Put(ctx, kv, key, own); err != nil {
		t.Fatal(err)
	}
	waitFor("the session's set", func() bool { return g.Hash() == own.Hash() })
	d := g.Decide(&Input{Request: policy.Request{HTTP: policy.HTTP{Path: "/o"}}})
	if d.Decision.Action != v1alpha1.ActionDeny || d.Decision.Policy != "own" {
		t.Errorf("decision under the session's set: %+v", d.Decision)
	}
	// A bundle that does not compile is refused and changes nothing.
	if _, err := kv.Put(ctx, key, []byte(`{"version":1,"hash":"x","policies":[{"metadata":{"name":"bad"},"spec":{"rules":[{"name":"r","match":"request.nope","action":"Deny"}]}}]}`)); err != nil {
		t.Fatal(err)
	}
	waitFor("the refusal", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(evs) > 0 && evs[len(evs)-1].Error != ""
	})
	if g.Hash() != own.Hash() {
		t.Errorf("a bad bundle replaced the set")
	}
	if err := kv.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	waitFor("the cluster's set again", func() bool { return g.Hash() == cluster.Hash() })
	b, err := os.ReadFile(filepath.Join(dir, CacheFile))
	if err != nil {
		t.Fatal(err)
	}
	if s, err := policy.Unmarshal(b); err != nil || s.Hash() != cluster.Hash() {
		t.Fatalf("cache holds %v, %v", s, err)
	}
	// A restart without the server starts from the cache.
	g2 := New(Options{Session: "s-1"})
	if !g2.LoadCache(WatchOptions{CacheDir: dir}) || g2.Hash() != cluster.Hash() {
		t.Errorf("LoadCache: hash %q", g2.Hash())
	}
	mu.Lock()
	defer mu.Unlock()
	var sources []string
	for _, e := range evs {
		sources = append(sources, e.Source)
	}
	want := []string{SourceServer, SourceSession, SourceSession, SourceServer}
	if len(sources) != len(want) {
		t.Fatalf("policy.loaded sources %v, want %v", sources, want)
	}
	for i := range want {
		if sources[i] != want[i] {
			t.Errorf("policy.loaded sources %v, want %v", sources, want)
		}
	}
}
