package natsbus

import (
	"context"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

func TestEmbeddedStreams(t *testing.T) {
	e, err := StartEmbedded(t.Context(), EmbeddedOptions{Addr: "127.0.0.1:0", StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := e.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	url := e.ClientURL()
	if !strings.HasPrefix(url, "nats://127.0.0.1:") || strings.HasSuffix(url, ":0") {
		t.Fatalf("client URL %q", url)
	}
	nc, err := Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if got := nc.MaxPayload(); got < MaxPayload {
		t.Fatalf("max payload %d, want at least %d", got, MaxPayload)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// Twice: the second call must update in place, not fail.
	for range 2 {
		if err := EnsureStreams(t.Context(), js); err != nil {
			t.Fatal(err)
		}
	}
	s, err := js.Stream(t.Context(), EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if cfg.Retention != jetstream.WorkQueuePolicy || cfg.Storage != jetstream.FileStorage || cfg.Duplicates < DuplicateWindow {
		t.Fatalf("events stream config %+v", cfg)
	}
	// An event and a blob subject are both captured.
	for _, subj := range []string{EventSubject("s1"), BlobSubject("s1")} {
		if _, err := js.Publish(t.Context(), subj, []byte("x")); err != nil {
			t.Fatalf("publish %s: %v", subj, err)
		}
	}
	if _, err := js.Publish(t.Context(), DeadLetterSubject, []byte("x")); err != nil {
		t.Fatalf("publish dead letter: %v", err)
	}
}

func TestStartEmbeddedRejectsBadAddr(t *testing.T) {
	for _, addr := range []string{"nope", "127.0.0.1:x", "127.0.0.1:70000"} {
		if _, err := StartEmbedded(t.Context(), EmbeddedOptions{Addr: addr, StoreDir: t.TempDir()}); err == nil {
			t.Errorf("%q accepted", addr)
		}
	}
}
