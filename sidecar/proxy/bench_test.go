package proxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/mask"
	"github.com/chaperone-dev/chaperone/pkg/natsbus"
	"github.com/chaperone-dev/chaperone/pkg/natsbus/natstest"
	"github.com/chaperone-dev/chaperone/pkg/proccpu"
	"github.com/chaperone-dev/chaperone/sidecar/gate"
	"github.com/chaperone-dev/chaperone/sidecar/masking"
	"github.com/chaperone-dev/chaperone/sidecar/publish"
)

// nullRecorder drops events, so the benchmark measures the relay and the
// parser rather than a store.
type nullRecorder struct{}

func (nullRecorder) Publish(context.Context, *event.Event) error       { return nil }
func (nullRecorder) PublishBlob(context.Context, string, []byte) error { return nil }
func (nullRecorder) Accepting() error                                  { return nil }

// benchUpstream serves the 1 KiB text responses of `make bench`.
func benchUpstream(b *testing.B) *httptest.Server {
	body := strings.Repeat("x", 1024)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, body)
	}))
	b.Cleanup(up.Close)
	return up
}

// getLoop makes b.N keep-alive GETs with client, reading every body.
func getLoop(b *testing.B, client *http.Client) {
	for range b.N {
		get(b, client)
	}
}

func get(b *testing.B, client *http.Client) {
	resp, err := client.Get("http://upstream/x")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
}

// BenchmarkProxyHTTP compares keep-alive GETs of a 1 KiB body made directly
// to the server with the same GETs through the recording proxy.
func BenchmarkProxyHTTP(b *testing.B) {
	up := benchUpstream(b)
	_, addr := startProxy(b, nullRecorder{}, up.Listener.Addr().String(), nil)
	run := func(b *testing.B, client *http.Client) {
		b.SetBytes(1024)
		b.ReportAllocs()
		getLoop(b, client)
	}
	b.Run("direct", func(b *testing.B) { run(b, proxiedClient(b, up.Listener.Addr().String())) })
	b.Run("proxy", func(b *testing.B) { run(b, proxiedClient(b, addr)) })
}

// BenchmarkProxyRecorded is the sidecar's whole recording path in one
// process: keep-alive GETs of a 1 KiB body through the proxy, masking,
// the publisher and its spool on disk, into an embedded JetStream. Each op
// is one request; the timer covers delivering every event and getting its
// JetStream ack, so the asynchronous work is counted. cpu-us/op is the
// process's CPU time (user+system) per request: client, upstream, proxy
// and NATS server together; compare it with the "direct" case, which has
// the same client and upstream and nothing else, and with "relay", the
// proxy with a recorder that drops every event (and no gate).
func BenchmarkProxyRecorded(b *testing.B) {
	up := benchUpstream(b)
	target := up.Listener.Addr().String()
	for _, tc := range []struct {
		name  string
		conns int
	}{{"serial", 1}, {"conns16", 16}} {
		b.Run("direct/"+tc.name, func(b *testing.B) {
			measure(b, tc.conns, func() *http.Client { return proxiedClient(b, target) }, func() {})
		})
		b.Run("relay/"+tc.name, func(b *testing.B) {
			_, addr := startProxy(b, nullRecorder{}, target, nil)
			measure(b, tc.conns, func() *http.Client { return proxiedClient(b, addr) }, func() {})
		})
		b.Run("recorded/"+tc.name, func(b *testing.B) {
			pub := startPublisher(b)
			m, err := mask.New(mask.Options{Key: []byte("bench-key-0123456789abcdef")})
			if err != nil {
				b.Fatal(err)
			}
			// A gate without a policy, as chaperone-sidecar always has one:
			// every HTTP/1 request is held until it is decided.
			g := gate.New(gate.Options{Session: "s1"})
			_, addr := startProxy(b, masking.New(pub, m), target, func(o *Options) { o.Gate = g })
			measure(b, tc.conns, func() *http.Client { return proxiedClient(b, addr) }, func() {
				waitDelivered(b, pub)
			})
		})
	}
}

// measure runs b.N GETs over conns keep-alive connections, then settle,
// and reports allocations and CPU time per request.
func measure(b *testing.B, conns int, client func() *http.Client, settle func()) {
	clients := make([]*http.Client, conns)
	for i := range clients {
		clients[i] = client()
		get(b, clients[i]) // connect outside the timer
	}
	settle()
	b.ReportAllocs()
	cpu0 := proccpu.Used()
	b.ResetTimer()
	work := make(chan struct{}, conns)
	done := make(chan struct{})
	for _, c := range clients {
		go func() {
			defer func() { done <- struct{}{} }()
			for range work {
				get(b, c)
			}
		}()
	}
	for range b.N {
		work <- struct{}{}
	}
	close(work)
	for range clients {
		<-done
	}
	settle()
	b.StopTimer()
	b.ReportMetric(float64((proccpu.Used()-cpu0).Microseconds())/float64(b.N), "cpu-us/op")
}

// startPublisher runs a publisher on a fresh spool into an embedded
// JetStream with the server's streams.
func startPublisher(b *testing.B) *publish.Publisher {
	ns := natstest.Start(b)
	if err := natsbus.EnsureStreams(b.Context(), ns.JS); err != nil {
		b.Fatal(err)
	}
	pub, err := publish.New(b.Context(), publish.Options{
		Session:  "bench",
		SpoolDir: b.TempDir(),
		NATSURL:  ns.URL,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = pub.Close(ctx)
	})
	return pub
}

// waitDelivered waits until JetStream acknowledged everything published.
func waitDelivered(b *testing.B, pub *publish.Publisher) {
	deadline := time.Now().Add(time.Minute)
	for pub.Pending() > 0 {
		if time.Now().After(deadline) {
			b.Fatalf("%d records still unacknowledged after a minute", pub.Pending())
		}
		time.Sleep(200 * time.Microsecond)
	}
}
