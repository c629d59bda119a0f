package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/natsbus"
	"github.com/chaperone-dev/chaperone/pkg/store/sqlite"
)

// started is a Run in the background.
type started struct {
	cancel context.CancelFunc
	done   chan error
	addrs  Addresses
}

func (s *started) stop(tb testing.TB) {
	tb.Helper()
	s.cancel()
	if err := <-s.done; err != nil {
		tb.Fatalf("run: %v", err)
	}
}

func testLogger() *slog.Logger {
	if os.Getenv("SERVER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// start runs the server on cfg and waits for addresses.json.
func start(tb testing.TB, cfg Config) *started {
	tb.Helper()
	if cfg.NATSPasswordFile == "" {
		cfg.NATSPasswordFile = filepath.Join(tb.TempDir(), "nats-password")
		if err := os.WriteFile(cfg.NATSPasswordFile, []byte(testNATSPassword+"\n"), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &started{cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- Run(ctx, cfg, testLogger()) }()
	waitFor(tb, "addresses.json", func() bool {
		select {
		case err := <-s.done:
			tb.Fatalf("run ended early: %v", err)
		default:
		}
		a, err := ReadAddresses(cfg.DataDir)
		s.addrs = a
		return err == nil
	})
	return s
}

func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func get(tb testing.TB, url string) (int, string) {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func newEvent(session string, seq uint64) *event.Event {
	e := event.New(session, event.KindProcessExec, time.Now())
	e.Seq = seq
	e.Source = event.SourceNode
	e.ProcessExec = &event.ProcessExec{ExecID: "x" + strconv.FormatUint(seq, 10), PID: int(seq), Binary: "/bin/true"}
	return e
}

// testNATSPassword is the server's own NATS password in tests (start
// writes it unless the config names a file).
const testNATSPassword = "test-nats-password"

// jsFor connects to the server's NATS as the server's own user.
func jsFor(tb testing.TB, url string) jetstream.JetStream {
	tb.Helper()
	nc, err := natsbus.Connect(context.Background(), url, nats.ReconnectWait(20*time.Millisecond),
		nats.UserInfo(DefaultNATSUser, testNATSPassword))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	return js
}

func TestRunSmoke(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s := start(t, Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0"})

	raw, err := os.ReadFile(filepath.Join(dir, AddressesFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.addrs.HTTP, "http://127.0.0.1:") || !strings.HasPrefix(s.addrs.NATS, "nats://127.0.0.1:") ||
		strings.HasSuffix(s.addrs.HTTP, ":0") || strings.HasSuffix(s.addrs.NATS, ":0") {
		t.Fatalf("addresses.json = %s", raw)
	}
	want := `{"http": "` + s.addrs.HTTP + `", "nats": "` + s.addrs.NATS + `"}` + "\n"
	if string(raw) != want {
		t.Fatalf("addresses.json = %q, want %q", raw, want)
	}
	if code, body := get(t, s.addrs.HTTP+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz: %d %s", code, body)
	}
	waitFor(t, "/readyz", func() bool { code, _ := get(t, s.addrs.HTTP+"/readyz"); return code == http.StatusOK })

	// An event published to the advertised NATS comes back out of the API.
	js := jsFor(t, s.addrs.NATS)
	e := newEvent("smoke", 1)
	b, _ := event.Encode(e)
	if _, err := js.Publish(t.Context(), natsbus.EventSubject(e.Session), b, jetstream.WithMsgID(e.ID)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "event served", func() bool {
		code, body := get(t, s.addrs.HTTP+"/api/v1/sessions/smoke/events")
		return code == http.StatusOK && strings.Contains(body, e.ID)
	})
	if code, body := get(t, s.addrs.HTTP+"/metrics"); code != http.StatusOK || !strings.Contains(body, "chaperone_ingest_events_total 1") {
		t.Fatalf("/metrics: %d, ingest counter missing", code)
	}
	s.stop(t)

	if _, err := http.Get(s.addrs.HTTP + "/healthz"); err == nil {
		t.Fatal("HTTP still answering after stop")
	}
	st, err := sqlite.Open(t.Context(), filepath.Join(dir, DBFile))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	res, err := st.Verify(t.Context(), "smoke")
	if err != nil || !res.OK || res.Events != 1 {
		t.Fatalf("verify: %+v, %v", res, err)
	}
}

func TestRunRefusesSecondServerOnSamePorts(t *testing.T) {
	dir := t.TempDir()
	s := start(t, Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0"})
	defer s.stop(t)
	host := strings.TrimPrefix(s.addrs.HTTP, "http://")
	err := Run(t.Context(), Config{DataDir: t.TempDir(), HTTPAddr: host, NATSAddr: "127.0.0.1:0"}, testLogger())
	if err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("second server on %s: %v", host, err)
	}
}

func freePort(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestRunRestart publishes 10,000 events while the whole server (store,
// embedded NATS, ingest, API) is stopped and started twice; afterwards
// every event is stored exactly once and every chain verifies.
func TestRunRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", NATSAddr: freePort(t)}
	s := start(t, cfg)
	js := jsFor(t, s.addrs.NATS)

	const n = 10000
	sessions := []string{"restart-a", "restart-b", "restart-c", "restart-d"}
	var published atomic.Int64
	pubDone := make(chan error, 1)
	go func() {
		for i := range n {
			sess := sessions[i%len(sessions)]
			e := newEvent(sess, uint64(i/len(sessions)+1))
			b, err := event.Encode(e)
			if err != nil {
				pubDone <- err
				return
			}
			// A producer re-sends until JetStream acknowledges, as the
			// sidecar's spool does; Nats-Msg-Id and the store de-duplicate.
			for attempt := 0; ; attempt++ {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_, err = js.Publish(ctx, natsbus.EventSubject(sess), b, jetstream.WithMsgID(e.ID))
				cancel()
				if err == nil {
					break
				}
				if attempt > 500 {
					pubDone <- err
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
			published.Add(1)
		}
		pubDone <- nil
	}()

	for _, at := range []int64{n / 4, n / 2} {
		waitFor(t, "publishing progress", func() bool { return published.Load() >= at })
		s.stop(t)
		s = start(t, cfg)
	}
	if err := <-pubDone; err != nil {
		t.Fatalf("publish: %v", err)
	}
	stream, err := js.Stream(t.Context(), natsbus.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stream drained into the store", func() bool {
		info, err := stream.Info(t.Context())
		return err == nil && info.State.Msgs == 0
	})
	s.stop(t)

	st, err := sqlite.Open(t.Context(), filepath.Join(dir, DBFile))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	total := uint64(0)
	for _, sess := range sessions {
		res, err := st.Verify(t.Context(), sess)
		if err != nil || !res.OK {
			t.Fatalf("verify %s: %+v, %v", sess, res, err)
		}
		seen := map[string]bool{}
		if err := st.Events(t.Context(), sess, 0, func(e *event.Event) error {
			if seen[e.ID] {
				return errors.New("event " + e.ID + " stored twice")
			}
			seen[e.ID] = true
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		total += res.Events
	}
	if total != n {
		t.Fatalf("stored %d events, want exactly %d", total, n)
	}
}
