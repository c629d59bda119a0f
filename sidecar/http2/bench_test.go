package http2

import (
	"bytes"
	"io"
	"net/http"
	"testing"
)

// BenchmarkHTTP2 measures 1 KiB responses relayed and recorded over one
// client connection carrying many concurrent streams.
func BenchmarkHTTP2(b *testing.B) {
	payload := bytes.Repeat([]byte("x"), 1<<10)
	h := newHarness(b, false, Options{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1024")
		_, _ = w.Write(payload)
	}))
	url := h.base + "/item"
	// One request first, so that the pool holds one connection.
	if resp, err := h.client.Get(url); err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := h.client.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if n != int64(len(payload)) {
				b.Errorf("read %d bytes", n)
				return
			}
		}
	})
	b.StopTimer()
	if c := h.conns.Load(); c != 1 {
		b.Errorf("%d client connections, want 1", c)
	}
}
