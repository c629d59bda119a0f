package demo

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// target is the demo's upstream: a small JSON HTTP API and a line echo
// service, listening on one host address.
type target struct {
	httpSrv *http.Server
	httpLn  net.Listener
	echoLn  net.Listener
	wg      sync.WaitGroup
}

func startTarget(ctx context.Context, ip netip.Addr) (*target, error) {
	var lc net.ListenConfig
	httpLn, err := lc.Listen(ctx, "tcp", netip.AddrPortFrom(ip, 0).String())
	if err != nil {
		return nil, fmt.Errorf("target http: %w", err)
	}
	echoLn, err := lc.Listen(ctx, "tcp", netip.AddrPortFrom(ip, 0).String())
	if err != nil {
		_ = httpLn.Close()
		return nil, fmt.Errorf("target echo: %w", err)
	}
	t := &target{httpLn: httpLn, echoLn: echoLn}
	t.httpSrv = &http.Server{Handler: targetAPI(), ReadHeaderTimeout: 5 * time.Second}
	t.wg.Add(2)
	go func() {
		defer t.wg.Done()
		_ = t.httpSrv.Serve(httpLn)
	}()
	go func() {
		defer t.wg.Done()
		t.serveEcho()
	}()
	return t, nil
}

func (t *target) httpAddr() string { return t.httpLn.Addr().String() }
func (t *target) echoAddr() string { return t.echoLn.Addr().String() }

func (t *target) serveEcho() {
	for {
		c, err := t.echoLn.Accept()
		if err != nil {
			return
		}
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			r := bufio.NewScanner(c)
			for r.Scan() {
				if _, err := fmt.Fprintf(c, "echo: %s\n", r.Text()); err != nil {
					return
				}
			}
		}()
	}
}

func (t *target) close(ctx context.Context) {
	_ = t.httpSrv.Shutdown(ctx)
	_ = t.echoLn.Close()
	t.wg.Wait()
}

type item struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
}

func targetAPI() http.Handler {
	var mu sync.Mutex
	items := []item{{1, "build cache"}, {2, "release notes"}}
	mux := http.NewServeMux()
	writeJSON := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET /api/items", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		writeJSON(w, http.StatusOK, items)
	})
	mux.HandleFunc("POST /api/items", func(w http.ResponseWriter, r *http.Request) {
		var it item
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&it); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		mu.Lock()
		it.ID = len(items) + 1
		items = append(items, it)
		mu.Unlock()
		writeJSON(w, http.StatusCreated, it)
	})
	mux.HandleFunc("GET /api/deploy-key", func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || token == "" {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "bearer token required"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"key": "deploy-key-for-ci", "scope": "read"})
	})
	return mux
}
