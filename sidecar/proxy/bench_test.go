package proxy

import (
	"context"

	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

// nullRecorder drops events, so the benchmark measures the relay and the
// parser rather than a store.
type nullRecorder struct{}

func (nullRecorder) Publish(context.Context, *event.Event) error       { return nil }
func (nullRecorder) PublishBlob(context.Context, string, []byte) error { return nil }
func (nullRecorder) Accepting() error                                  { return nil }

// BenchmarkProxyHTTP compares keep-alive GETs of a 1 KiB body made directly
// to the server with the same GETs through the recording proxy.
func BenchmarkProxyHTTP(b *testing.B) {
	body := strings.Repeat("x", 1024)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, body)
	}))
	defer up.Close()
	_, addr := startProxy(b, nullRecorder{}, up.Listener.Addr().String(), nil)
	run := func(b *testing.B, client *http.Client) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			resp, err := client.Get("http://upstream/x")
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, resp.Body); err != nil {
				b.Fatal(err)
			}
			resp.Body.Close()
		}
	}
	b.Run("direct", func(b *testing.B) { run(b, proxiedClient(b, up.Listener.Addr().String())) })
	b.Run("proxy", func(b *testing.B) { run(b, proxiedClient(b, addr)) })
}
