package masking

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/mask"
)

const ghp = "ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z5A"

type memRecorder struct {
	events []*event.Event
	blobs  map[string][]byte
}

func (m *memRecorder) Publish(_ context.Context, e *event.Event) error {
	m.events = append(m.events, e)
	return nil
}

func (m *memRecorder) PublishBlob(_ context.Context, ref string, data []byte) error {
	m.blobs[ref] = data
	return nil
}

func (m *memRecorder) Accepting() error { return nil }

func TestRecorderMasksEventsAndBlobs(t *testing.T) {
	mk, err := mask.New(mask.Options{Key: []byte("k")})
	if err != nil {
		t.Fatal(err)
	}
	next := &memRecorder{blobs: map[string][]byte{}}
	r := New(next, mk)
	ctx := t.Context()

	blob := []byte(strings.Repeat("log line\n", 100) + "token: " + ghp + "\n")
	sum := sha256.Sum256(blob)
	ref := "sha256:" + hex.EncodeToString(sum[:])
	if err := r.PublishBlob(ctx, ref, blob); err != nil {
		t.Fatal(err)
	}
	e := event.New("s1", event.KindHTTPRequest, time.Now())
	e.HTTPRequest = &event.HTTPRequest{Method: "POST", URL: "/x?api_key=Zq8Xv2Lk9Pm4Wn7R",
		Headers: map[string][]string{"X-Api-Key": {"abc-unknown-format-1"}, "Content-Type": {"text/plain"}},
		Body:    &event.Body{Size: int64(len(blob)), Recorded: int64(len(blob)), Ref: ref}}
	if err := r.Publish(ctx, e); err != nil {
		t.Fatal(err)
	}
	got := next.events[0]
	raw, _ := event.Encode(got)
	for _, bad := range []string{ghp, "Zq8Xv2Lk9Pm4Wn7R", "abc-unknown-format-1"} {
		if bytes.Contains(raw, []byte(bad)) {
			t.Errorf("event holds %q: %s", bad, raw)
		}
	}
	newRef := got.HTTPRequest.Body.Ref
	data, ok := next.blobs[newRef]
	if newRef == ref || !ok || bytes.Contains(data, []byte(ghp)) {
		t.Fatalf("blob ref %s -> %s, stored %v", ref, newRef, ok)
	}
	if s := sha256.Sum256(data); "sha256:"+hex.EncodeToString(s[:]) != newRef {
		t.Fatal("masked blob's ref is not its hash")
	}
	if !slices.Contains(got.Masked, "github-pat") || !slices.Contains(got.Masked, mask.KeyedRule) {
		t.Errorf("masked rules %v", got.Masked)
	}

	l := event.New("s1", event.KindLLMCompletion, time.Now())
	l.LLMCompletion = &event.LLMCompletion{Text: "use " + ghp, ToolCalls: []event.LLMToolCall{{Name: "sh", Arguments: `{"cmd":"curl -H 'Authorization: token ` + ghp + `'"}`}}}
	q := event.New("s1", event.KindSQLQuery, time.Now())
	q.SQLQuery = &event.SQLQuery{Statement: "CREATE USER bob PASSWORD 'Sup3r-S3cret!'"}
	for _, ev := range []*event.Event{l, q} {
		if err := r.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
		raw, _ := event.Encode(ev)
		if bytes.Contains(raw, []byte(ghp)) || bytes.Contains(raw, []byte("Sup3r-S3cret!")) || len(ev.Masked) == 0 {
			t.Errorf("not masked: %s", raw)
		}
	}
}

func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	k1, err := LoadKey("", dir)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := LoadKey("", dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k1, k2) {
		t.Fatal("generated key not kept across restarts")
	}
	if fi, err := os.Stat(filepath.Join(dir, KeyFileName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	kf := filepath.Join(dir, "given.key")
	if err := os.WriteFile(kf, []byte("a-long-enough-installation-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	k3, err := LoadKey(kf, dir)
	if err != nil || bytes.Equal(k3, k1) {
		t.Fatalf("key file: %v", err)
	}
	if err := os.WriteFile(kf, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKey(kf, dir); err == nil {
		t.Fatal("short key accepted")
	}
	if _, err := LoadKey(filepath.Join(dir, "missing"), dir); err == nil {
		t.Fatal("missing key file accepted")
	}
}

// TestRecorderMasksLLMAndMCP checks every text field of the LLM and MCP
// events: nothing raw leaves.
func TestRecorderMasksLLMAndMCP(t *testing.T) {
	mk, err := mask.New(mask.Options{Key: []byte("k")})
	if err != nil {
		t.Fatal(err)
	}
	next := &memRecorder{blobs: map[string][]byte{}}
	r := New(next, mk)
	p := event.New("s1", event.KindLLMPrompt, time.Now())
	p.LLMPrompt = &event.LLMPrompt{Provider: "openai", System: "key " + ghp,
		Messages: []event.LLMMessage{{Role: "user", Content: "token=" + ghp}}, Tools: []string{"tool " + ghp}}
	l := event.New("s1", event.KindMCPToolList, time.Now())
	l.MCPToolList = &event.MCPToolList{Server: "mcp.test/mcp", Tools: []event.MCPTool{{Name: "gh",
		Description: "uses " + ghp, InputSchema: `{"type":"object","default":"` + ghp + `"}`}}, Error: "bad " + ghp}
	c := event.New("s1", event.KindMCPToolCall, time.Now())
	c.MCPToolCall = &event.MCPToolCall{Server: "mcp.test/mcp", Name: "read",
		Arguments: `{"path":"/x","password":"hunter2-but-longer-Zq8"}`, Result: "got " + ghp, Error: "e " + ghp}
	for _, ev := range []*event.Event{p, l, c} {
		if err := r.Publish(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
		raw, _ := event.Encode(ev)
		if bytes.Contains(raw, []byte(ghp)) || bytes.Contains(raw, []byte("hunter2-but-longer-Zq8")) || len(ev.Masked) == 0 {
			t.Errorf("%s not masked: %s", ev.Kind, raw)
		}
		if err := ev.Validate(); err != nil {
			t.Errorf("%s: %v", ev.Kind, err)
		}
	}
	if c.MCPToolCall.Name != "read" || !strings.Contains(c.MCPToolCall.Arguments, `"path":"/x"`) {
		t.Errorf("tool call %+v", c.MCPToolCall)
	}
}
