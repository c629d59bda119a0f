package admin

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "chaperone_test_total", Help: "t"})
	reg.MustRegister(c)
	c.Inc()
	var down atomic.Bool
	down.Store(true)
	s := New(Options{
		Gatherer: reg,
		Ready: []Check{
			{Name: "proxy", Fn: func() error { return nil }},
			{Name: "recorder", Fn: func() error {
				if down.Load() {
					return errors.New("nats down and spool full")
				}
				return nil
			}},
		},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(t.Context(), ln) }()
	base := "http://" + ln.Addr().String()
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("healthz %d", code)
	}
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "recorder: nats down") {
		t.Errorf("readyz %d %q", code, body)
	}
	down.Store(false)
	if code, body := get("/readyz"); code != 200 || !strings.Contains(body, "proxy: ok") {
		t.Errorf("readyz %d %q", code, body)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "chaperone_test_total 1") {
		t.Errorf("metrics %d %q", code, body)
	}
	if err := s.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
