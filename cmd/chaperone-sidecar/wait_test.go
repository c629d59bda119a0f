package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestWait(t *testing.T) {
	var ready atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if ready.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	var out bytes.Buffer
	if err := runWait(t.Context(), []string{"--admin-addr", addr, "--timeout", "10s"}, &out); err != nil {
		t.Fatalf("wait: %v", err)
	}
	if n := ready.Load(); n < 3 {
		t.Fatalf("returned after %d probes, before ready", n)
	}
	srv.Close()
	if err := runWait(t.Context(), []string{"--admin-addr", addr, "--timeout", "500ms"}, &out); err == nil || !strings.Contains(err.Error(), "not ready within") {
		t.Fatalf("wait on a dead proxy: %v", err)
	}
}
