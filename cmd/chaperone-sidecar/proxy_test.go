package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/natsbus"
	"github.com/chaperone-dev/chaperone/sidecar/certs"
)

func TestProxyConfigValidate(t *testing.T) {
	env := map[string]string{"POD_UID": "0b6c-11ef", "CHAPERONE_NATS_URL": "nats://127.0.0.1:4222", "POD_NAME": "agent", "CHAPERONE_GROUPS": "dev, ops"}
	getenv := func(k string) string { return env[k] }
	cfg, err := parseProxyFlags(nil, io.Discard, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TrustDir != certs.DefaultTrustDir {
		t.Errorf("trust dir %q", cfg.TrustDir)
	}
	multi, err := parseProxyFlags([]string{"--extra-ca", "/a.crt", "--extra-ca", "/b.crt", "--no-intercept", "*.corp.test, 10.0.0.0/8", "--no-intercept", "x.test"}, io.Discard, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if len(multi.ExtraCA) != 2 || len(multi.NoIntercept) != 3 {
		t.Errorf("extra-ca %q no-intercept %q", multi.ExtraCA, multi.NoIntercept)
	}
	if cfg.Session != "0b6c-11ef" || cfg.Identity.Pod != "agent" || len(cfg.Identity.Groups) != 2 || cfg.Listen != ":15001" || cfg.AdminAddr != ":15020" {
		t.Errorf("config %+v", cfg)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--session", "bad.session"}, "invalid session"},
		{[]string{"--origin", "cron"}, "--origin"},
		{[]string{"--listen", "15001"}, "--listen"},
		{[]string{"--nats-url", ""}, "--nats-url"},
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"--no-intercept", "a.*.com"}, "--no-intercept"},
		{[]string{"--trust-dir", ""}, "--trust-dir"},
	} {
		if _, err := parseProxyFlags(tt.args, io.Discard, getenv); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: err %v, want %q", tt.args, err, tt.want)
		}
	}
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestRunRecordsSession runs the proxy subcommand against an embedded
// JetStream: session.start at start, a refused conn.open for a connection
// that was not redirected (no original destination), session.end at
// shutdown, all delivered to the stream.
func TestRunRecordsSession(t *testing.T) {
	ns, err := natsbus.StartEmbedded(t.Context(), natsbus.EmbeddedOptions{Addr: "127.0.0.1:0", StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown(context.Background())
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := natsbus.EnsureStreams(t.Context(), js); err != nil {
		t.Fatal(err)
	}

	cfg := ProxyConfig{
		Listen: freeAddr(t), AdminAddr: freeAddr(t), Session: "sess-1", Origin: "pod",
		NATSURL: ns.ClientURL(), SpoolDir: t.TempDir(), TrustDir: t.TempDir() + "/trust", DrainTimeout: time.Second, FlushTimeout: 5 * time.Second,
		Identity: event.Identity{Pod: "agent-0"},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- cfg.run(ctx, slog.New(slog.DiscardHandler), nil) }()

	// Wait for readiness through the admin port.
	for {
		resp, err := http.Get("http://" + cfg.AdminAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		select {
		case err := <-done:
			t.Fatalf("run ended: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	// Ready means the agent's trust files are there.
	for _, f := range []string{certs.CAFile, certs.BundleFile} {
		if b, err := os.ReadFile(filepath.Join(cfg.TrustDir, f)); err != nil || !strings.Contains(string(b), "BEGIN CERTIFICATE") {
			t.Errorf("trust file %s: %v", f, err)
		}
	}
	// Not a redirected connection: the proxy refuses it, with a reset that
	// may already reach the dial.
	c, err := net.Dial("tcp", cfg.Listen)
	switch {
	case errors.Is(err, syscall.ECONNRESET):
	case err != nil:
		t.Fatal(err)
	default:
		_, _ = io.ReadAll(c)
		c.Close()
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}

	cons, err := js.CreateConsumer(t.Context(), natsbus.EventsStream, jetstream.ConsumerConfig{
		FilterSubject: natsbus.EventSubject("sess-1"),
		AckPolicy:     jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for len(kinds) < 3 {
		msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("after %v: %v", kinds, err)
		}
		lines, err := natsbus.EventLines(msg.Headers(), msg.Data())
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lines {
			var e event.Event
			if err := json.Unmarshal(l, &e); err != nil {
				t.Fatal(err)
			}
			kinds = append(kinds, string(e.Kind))
			if e.Kind == event.KindConnOpen && (e.ConnOpen == nil || !strings.Contains(e.ConnOpen.Refused, "original destination")) {
				t.Errorf("conn.open %+v", e.ConnOpen)
			}
		}
	}
	if got := strings.Join(kinds, " "); got != "session.start conn.open session.end" {
		t.Errorf("events %s", got)
	}
}
