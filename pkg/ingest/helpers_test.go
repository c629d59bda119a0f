package ingest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/natsbus"
)

// startNATS runs an embedded JetStream server on a random loopback port
// with the Chaperone streams, and returns a connection to it.
func startNATS(tb testing.TB) (*natsbus.Embedded, jetstream.JetStream) {
	tb.Helper()
	ctx := context.Background()
	e, err := natsbus.StartEmbedded(ctx, natsbus.EmbeddedOptions{Addr: "127.0.0.1:0", StoreDir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := e.Shutdown(context.Background()); err != nil {
			tb.Error(err)
		}
	})
	js := connect(tb, e.ClientURL())
	if err := natsbus.EnsureStreams(ctx, js); err != nil {
		tb.Fatal(err)
	}
	return e, js
}

func connect(tb testing.TB, url string) jetstream.JetStream {
	tb.Helper()
	nc, err := natsbus.Connect(context.Background(), url, nats.ReconnectWait(20*time.Millisecond))
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

// running is an Ingester started in the background.
type running struct {
	in     *Ingester
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// stop cancels the ingester and waits for Run to return.
func (r *running) stop() error {
	r.once.Do(func() {
		r.cancel()
		r.err = <-r.done
	})
	return r.err
}

func startIngest(tb testing.TB, o Options) *running {
	tb.Helper()
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	if o.Logger == nil && os.Getenv("INGEST_TEST_LOG") != "" {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	in, err := New(o)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{in: in, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- in.Run(ctx) }()
	tb.Cleanup(func() {
		if err := r.stop(); err != nil {
			tb.Error(err)
		}
	})
	waitFor(tb, "ingest running", func() bool { return in.Ready() == nil })
	return r
}

// waitFor polls cond until it holds; the test's own deadline bounds it,
// with a long backstop so a hang fails with a message.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// newEvent returns a valid http.request event of session with a body of
// bodySize bytes.
func newEvent(session string, seq uint64, bodySize int) *event.Event {
	e := event.New(session, event.KindHTTPRequest, time.Now())
	e.Seq = seq
	e.Source = event.SourceSidecar
	e.HTTPRequest = &event.HTTPRequest{
		Stream: seq, Proto: "HTTP/1.1", Method: "POST", URL: "/v1/things", Host: "api.example",
		Body: &event.Body{Size: int64(bodySize), Recorded: int64(bodySize), Text: strings.Repeat("x", bodySize)},
	}
	return e
}

// newEvents makes n events of session (seqs 1..n) and their encodings.
func newEvents(tb testing.TB, session string, n, bodySize int) ([]*event.Event, [][]byte) {
	tb.Helper()
	evs := make([]*event.Event, 0, n)
	lines := make([][]byte, 0, n)
	for i := range n {
		e := newEvent(session, uint64(i+1), bodySize)
		evs = append(evs, e)
		lines = append(lines, encode(tb, e))
	}
	return evs, lines
}

// waitEventsDrained waits until the events stream holds no message: every
// one was acknowledged or, if bad, terminated.
func waitEventsDrained(tb testing.TB, js jetstream.JetStream) {
	tb.Helper()
	es, err := js.Stream(tb.Context(), natsbus.EventsStream)
	if err != nil {
		tb.Fatal(err)
	}
	waitFor(tb, "events stream empty", func() bool {
		info, err := es.Info(tb.Context())
		return err == nil && info.State.Msgs == 0
	})
}

func encode(tb testing.TB, e *event.Event) []byte {
	tb.Helper()
	b, err := event.Encode(e)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func publishEvent(tb testing.TB, js jetstream.JetStream, e *event.Event) {
	tb.Helper()
	if _, err := js.Publish(context.Background(), natsbus.EventSubject(e.Session), encode(tb, e), jetstream.WithMsgID(e.ID)); err != nil {
		tb.Fatal(err)
	}
}

func publishBlob(tb testing.TB, js jetstream.JetStream, session, ref string, data []byte) {
	tb.Helper()
	m := nats.NewMsg(natsbus.BlobSubject(session))
	m.Data = data
	m.Header.Set(natsbus.BlobRefHeader, ref)
	if _, err := js.PublishMsg(context.Background(), m, jetstream.WithMsgID(ref)); err != nil {
		tb.Fatal(err)
	}
}

func refOf(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// metricValue reads a counter or gauge from reg; labels select one series.
func metricValue(tb testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	tb.Helper()
	fams, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue series
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}
