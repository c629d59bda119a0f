package publish

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/natsbus"
	"github.com/chaperone-dev/chaperone/sidecar/spool"
)

var outage = flag.Duration("outage", 0, "NATS outage in TestNATSAway (default 30s, 3s with -short)")

const session = "pod-7f3c"

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func newPublisher(t testing.TB, url, dir string, mod func(*Options)) *Publisher {
	t.Helper()
	opts := Options{
		Session:    session,
		SpoolDir:   dir,
		NATSURL:    url,
		AckTimeout: 2 * time.Second,
		Logger:     testLogger(t),
		Registerer: prometheus.NewRegistry(),
	}
	if mod != nil {
		mod(&opts)
	}
	p, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	return p
}

func newEvent(i int, pad int) *event.Event {
	e := event.New(session, event.KindConnOpen, time.Now())
	e.ConnOpen = &event.ConnOpen{Client: fmt.Sprintf("10.0.0.1:%d", i)}
	if pad > 0 {
		e.ConnOpen.Refused = strings.Repeat("x", pad)
	}
	return e
}

// waitDrained polls until the spool holds no unacknowledged record.
func waitDrained(t testing.TB, p *Publisher, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if _, recs := p.sp.Usage(); recs == 0 {
			return
		}
		if time.Now().After(deadline) {
			b, recs := p.sp.Usage()
			t.Fatalf("spool not drained after %v: %d records, %d bytes", within, recs, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRoundTrip(t *testing.T) {
	ns := startNATS(t)
	p := newPublisher(t, ns.url, t.TempDir(), nil)
	ctx := t.Context()
	const n = 5000
	var want []string // msg ids in publish order
	for i := 1; i <= n; i++ {
		if i%500 == 1 {
			data := []byte(strings.Repeat(fmt.Sprintf("body %d ", i), 1000))
			sum := sha256.Sum256(data)
			ref := "sha256:" + hex.EncodeToString(sum[:])
			if err := p.PublishBlob(ctx, ref, data); err != nil {
				t.Fatal(err)
			}
			want = append(want, ref)
		}
		e := newEvent(i, 0)
		if err := p.Publish(ctx, e); err != nil {
			t.Fatal(err)
		}
		if e.Seq != uint64(i) || e.Session != session {
			t.Fatalf("event %d got seq %d session %q", i, e.Seq, e.Session)
		}
		want = append(want, e.ID)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := p.Close(cctx); err != nil {
		t.Fatal(err)
	}
	got := ns.readStream(ctx)
	if len(got) != len(want) {
		t.Fatalf("stream holds %d messages, want %d", len(got), len(want))
	}
	var seq uint64
	for i, m := range got {
		if m.msgID != want[i] {
			t.Fatalf("message %d is %s, want %s", i, m.msgID, want[i])
		}
		if m.blobRef != "" {
			if m.subject != natsbus.BlobSubject(session) || m.blobRef != m.msgID {
				t.Fatalf("blob %s on %s with ref %s", m.msgID, m.subject, m.blobRef)
			}
			if sum := sha256.Sum256(m.data); "sha256:"+hex.EncodeToString(sum[:]) != m.blobRef {
				t.Fatalf("blob %s data does not match its ref", m.blobRef)
			}
			continue
		}
		seq++
		if m.subject != natsbus.EventSubject(session) || m.seq != seq {
			t.Fatalf("event %d: subject %s seq %d, want seq %d", i, m.subject, m.seq, seq)
		}
	}
}

// TestNATSAway publishes at a steady rate through a NATS outage: every
// event arrives exactly once and the spool ends empty.
func TestNATSAway(t *testing.T) {
	down := *outage
	if down == 0 {
		down = 30 * time.Second
		if testing.Short() {
			down = 3 * time.Second
		}
	}
	ns := startNATS(t)
	p := newPublisher(t, ns.url, t.TempDir(), nil)
	ctx := t.Context()

	const every = 2 * time.Millisecond // 500 events/s
	tick := time.NewTicker(every)
	defer tick.Stop()
	published := 0
	publishFor := func(d time.Duration) {
		end := time.Now().Add(d)
		for time.Now().Before(end) {
			<-tick.C
			if err := p.Publish(ctx, newEvent(published, 200)); err != nil {
				t.Fatalf("publish %d: %v", published, err)
			}
			published++
		}
	}
	publishFor(time.Second)
	ns.stop()
	t.Logf("nats down after %d events, for %v", published, down)
	publishFor(down)
	if _, recs := p.sp.Usage(); recs == 0 {
		t.Fatal("spool empty while NATS is down")
	}
	if err := p.Accepting(); err != nil {
		t.Fatalf("Accepting during outage: %v", err)
	}
	if err := p.Ready(); err != nil {
		t.Fatalf("Ready during outage: %v", err)
	}
	ns.start()
	t.Logf("nats back after %d events", published)
	publishFor(time.Second)
	waitDrained(t, p, 30*time.Second)

	got := ns.readStream(ctx)
	seqs := map[uint64]bool{}
	for _, m := range got {
		seqs[m.seq] = true
	}
	if n := distinct(t, got); n != published {
		t.Fatalf("stream holds %d events, %d distinct, want %d", len(got), n, published)
	}
	for s := uint64(1); s <= uint64(published); s++ {
		if !seqs[s] {
			t.Fatalf("seq %d missing", s)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := p.Close(cctx); err != nil {
		t.Fatal(err)
	}
}

func TestSpoolFull(t *testing.T) {
	ns := startNATS(t)
	ns.stop()
	p := newPublisher(t, ns.url, t.TempDir(), func(o *Options) {
		o.SpoolOptions = spool.Options{MaxBytes: 64 << 10}
	})
	ctx := t.Context()
	accepted := 0
	for {
		err := p.Publish(ctx, newEvent(accepted, 500))
		if errors.Is(err, spool.ErrFull) {
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("full error %v does not wrap ErrUnavailable", err)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		accepted++
		if accepted > 10000 {
			t.Fatal("spool never filled")
		}
	}
	if err := p.Accepting(); !errors.Is(err, spool.ErrFull) {
		t.Fatalf("Accepting when full: %v, want ErrFull", err)
	}
	ns.start()
	deadline := time.Now().Add(30 * time.Second)
	for p.Accepting() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("still not accepting after NATS returned: %v", p.Accepting())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.Publish(ctx, newEvent(accepted, 500)); err != nil {
		t.Fatal(err)
	}
	accepted++
	waitDrained(t, p, 30*time.Second)
	if got := ns.readStream(ctx); len(got) != accepted {
		t.Fatalf("stream holds %d events, want %d", len(got), accepted)
	}
}

func TestUnwritableSpoolDir(t *testing.T) {
	ns := startNATS(t)
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := New(t.Context(), Options{Session: session, SpoolDir: file, NATSURL: ns.url})
	if !errors.Is(err, syscall.ENOTDIR) || !strings.Contains(err.Error(), file) {
		t.Fatalf("New on a file: %v, want ENOTDIR naming the path", err)
	}
}

// TestDiskFull runs the spool on a real 64 KiB tmpfs, which refuses writes
// with ENOSPC even for root.
func TestDiskFull(t *testing.T) {
	ns := startNATS(t)
	ns.stop()
	dir := mountTmpfs(t, 64<<10)
	p := newPublisher(t, ns.url, dir, nil)
	ctx := t.Context()
	accepted := 0
	var perr error
	for accepted < 10000 {
		if perr = p.Publish(ctx, newEvent(accepted, 500)); perr != nil {
			break
		}
		accepted++
	}
	if !errors.Is(perr, syscall.ENOSPC) || !errors.Is(perr, ErrUnavailable) {
		t.Fatalf("publish on a full disk: %v, want ErrUnavailable and ENOSPC", perr)
	}
	if err := p.Accepting(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Accepting on a full disk: %v, want ENOSPC", err)
	}
	if err := p.Ready(); err == nil {
		t.Fatal("Ready with NATS down and the spool unwritable")
	}
	ns.start()
	waitDrained(t, p, 30*time.Second)
	if err := p.Accepting(); err != nil {
		t.Fatalf("Accepting after the spool drained: %v", err)
	}
	if got := ns.readStream(ctx); len(got) != accepted {
		t.Fatalf("stream holds %d events, want %d", len(got), accepted)
	}
}

func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("SKIP (needs root with mount rights): mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// TestRestart spools while NATS is down, closes, and lets a second
// publisher on the same directory deliver the events and continue the
// sequence.
func TestRestart(t *testing.T) {
	ns := startNATS(t)
	ns.stop()
	dir := t.TempDir()
	ctx := t.Context()
	p1, err := New(ctx, Options{Session: session, SpoolDir: dir, NATSURL: ns.url, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if err := p1.Publish(ctx, newEvent(i, 0)); err != nil {
			t.Fatal(err)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	err = p1.Close(cctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "100 records") {
		t.Fatalf("Close with NATS down: %v, want 100 records left", err)
	}
	if err := p1.Publish(ctx, newEvent(0, 0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Publish after Close: %v", err)
	}

	ns.start()
	p2 := newPublisher(t, ns.url, dir, nil)
	for i := range 10 {
		e := newEvent(i, 0)
		if err := p2.Publish(ctx, e); err != nil {
			t.Fatal(err)
		}
		if e.Seq != uint64(101+i) {
			t.Fatalf("seq after restart %d, want %d", e.Seq, 101+i)
		}
	}
	waitDrained(t, p2, 30*time.Second)
	got := ns.readStream(ctx)
	if len(got) != 110 {
		t.Fatalf("stream holds %d events, want 110", len(got))
	}
	for i, m := range got {
		if m.seq != uint64(i+1) {
			t.Fatalf("message %d has seq %d", i, m.seq)
		}
	}
}

func BenchmarkPublish(b *testing.B) {
	ns := startNATS(b)
	p := newPublisher(b, ns.url, b.TempDir(), func(o *Options) { o.Logger = nil })
	ctx := b.Context()
	events := make([]*event.Event, 1024)
	for i := range events {
		events[i] = newEvent(i, 0)
	}
	data, _ := event.Encode(events[0])
	pad := max(1024-len(data), 0)
	for _, e := range events {
		e.ConnOpen.Refused = strings.Repeat("x", pad)
	}
	b.SetBytes(1024)
	b.ReportAllocs()
	i := 0
	start := time.Now()
	for b.Loop() {
		e := events[i%len(events)]
		e.ID = event.NewID(e.Time)
		if err := p.Publish(ctx, e); err != nil {
			b.Fatal(err)
		}
		i++
	}
	waitDrained(b, p, time.Minute)
	b.ReportMetric(float64(i)/time.Since(start).Seconds(), "events/s")
}

// TestNoStreamThenStream publishes while no JetStream stream takes the
// subjects: NATS answers "no responders", the events stay in the spool,
// and they all arrive once the stream exists. A small window makes the
// sender wait for answers too.
func TestNoStreamThenStream(t *testing.T) {
	ns := startNATS(t)
	nc, js := ns.connect()
	defer nc.Close()
	if err := js.DeleteStream(t.Context(), natsbus.EventsStream); err != nil {
		t.Fatal(err)
	}
	p := newPublisher(t, ns.url, t.TempDir(), func(o *Options) { o.MaxInFlight = 8 })
	const n = 100
	for i := range n {
		if err := p.Publish(t.Context(), newEvent(i, 0)); err != nil {
			t.Fatal(err)
		}
	}
	// Refused, not lost: the sender backs off and tries again.
	deadline := time.Now().Add(10 * time.Second)
	for !p.failing.Load() {
		if time.Now().After(deadline) {
			t.Fatal("publishing without a stream never failed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := p.Pending(); got != n {
		t.Fatalf("%d records pending without a stream, want %d", got, n)
	}
	ns.createStream()
	waitDrained(t, p, 30*time.Second)
	got := ns.readStream(t.Context())
	if d := distinct(t, got); d != n {
		t.Fatalf("stream holds %d events, %d distinct, want %d", len(got), d, n)
	}
}
