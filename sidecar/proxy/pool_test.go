package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

// countingUpstream answers with the request's path and whether it asked
// to close, and reports its connections opening and closing.
type countingUpstream struct {
	srv            *httptest.Server
	opened, closed atomic.Int32
	closedCh       chan struct{}
}

func newCountingUpstream(t *testing.T, idle time.Duration) *countingUpstream {
	t.Helper()
	u := &countingUpstream{closedCh: make(chan struct{}, 16)}
	u.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s close=%v", r.URL.Path, r.Close)
	}))
	u.srv.Config.IdleTimeout = idle
	u.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			u.opened.Add(1)
		case http.StateClosed, http.StateHijacked:
			u.closed.Add(1)
			u.closedCh <- struct{}{}
		}
	}
	u.srv.Start()
	t.Cleanup(u.srv.Close)
	return u
}

// waitClosed waits until the upstream saw a connection close.
func (u *countingUpstream) waitClosed(t *testing.T) {
	t.Helper()
	select {
	case <-u.closedCh:
	case <-time.After(10 * time.Second): // a safety net, not a timing assertion
		t.Fatal("the upstream connection was not closed")
	}
}

// getOnce sends one request on a new connection to addr, reads the
// response and closes; closeOpt adds "Connection: close".
func getOnce(t *testing.T, addr, path string, closeOpt bool) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	extra := ""
	if closeOpt {
		extra = "Connection: close\r\n"
	}
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: up.test\r\n%s\r\n", path, extra)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestUpstreamReusedAcrossClients(t *testing.T) {
	up := newCountingUpstream(t, 0)
	rec := newMemRecorder()
	p, addr := startProxy(t, rec, up.srv.Listener.Addr().String(), nil)

	for i := range 4 {
		closeOpt := i%2 == 1
		resp, body := getOnce(t, addr, fmt.Sprintf("/%d", i), closeOpt)
		// The upstream never sees the client's close: it is answered by
		// the sidecar, which closes the client itself.
		if want := fmt.Sprintf("/%d close=false", i); body != want {
			t.Errorf("body %q, want %q", body, want)
		}
		if resp.Close != closeOpt {
			t.Errorf("request %d: response close=%v, want %v", i, resp.Close, closeOpt)
		}
		rec.closes(t, i+1) // the upstream connection is back in the pool
	}
	if n := up.opened.Load(); n != 1 {
		t.Errorf("upstream connections %d, want 1", n)
	}
	if d, r := testutil.ToFloat64(p.m.upstreams.WithLabelValues(upstreamDialed)), testutil.ToFloat64(p.m.upstreams.WithLabelValues(upstreamReused)); d != 1 || r != 3 {
		t.Errorf("upstreams dialed %v reused %v, want 1 and 3", d, r)
	}
	evs := rec.closes(t, 4)
	if got := len(ofKind(evs, event.KindConnOpen)); got != 4 {
		t.Errorf("%d conn.open events, want one per client connection", got)
	}
	reqs := ofKind(evs, event.KindHTTPRequest)
	if len(reqs) != 4 {
		t.Fatalf("%d requests recorded", len(reqs))
	}
	if h := reqs[1].HTTPRequest.Headers["Connection"]; len(h) != 1 || h[0] != "close" {
		t.Errorf("recorded request Connection %v, want the client's close", h)
	}
}

func TestUpstreamClosedWhileIdle(t *testing.T) {
	up := newCountingUpstream(t, 20*time.Millisecond)
	rec := newMemRecorder()
	p, addr := startProxy(t, rec, up.srv.Listener.Addr().String(), nil)

	if _, body := getOnce(t, addr, "/a", false); body != "/a close=false" {
		t.Fatalf("body %q", body)
	}
	rec.closes(t, 1)
	up.waitClosed(t) // the upstream closed the kept connection
	// The next client does not get the dead connection.
	if _, body := getOnce(t, addr, "/b", false); body != "/b close=false" {
		t.Fatalf("body %q", body)
	}
	evs := rec.closes(t, 2)
	for _, e := range ofKind(evs, event.KindConnClose) {
		if e.ConnClose.Error != "" {
			t.Errorf("conn.close error %q", e.ConnClose.Error)
		}
	}
	if d := testutil.ToFloat64(p.m.upstreams.WithLabelValues(upstreamDialed)); d != 2 {
		t.Errorf("dialed %v, want 2", d)
	}
}

func TestUpstreamIdleExpires(t *testing.T) {
	up := newCountingUpstream(t, 0)
	rec := newMemRecorder()
	_, addr := startProxy(t, rec, up.srv.Listener.Addr().String(), func(o *Options) {
		o.UpstreamIdle = 20 * time.Millisecond
	})
	getOnce(t, addr, "/a", false)
	up.waitClosed(t) // closed by the pool, the upstream keeps it forever
}

func TestUpstreamPoolClosedAtShutdown(t *testing.T) {
	up := newCountingUpstream(t, 0)
	rec := newMemRecorder()
	p, addr := startProxy(t, rec, up.srv.Listener.Addr().String(), nil)
	getOnce(t, addr, "/a", false)
	rec.closes(t, 1)
	if n := up.closed.Load(); n != 0 {
		t.Fatalf("%d upstream connections closed before shutdown", n)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	up.waitClosed(t)
}

func TestUpstreamReuseOff(t *testing.T) {
	up := newCountingUpstream(t, 0)
	rec := newMemRecorder()
	_, addr := startProxy(t, rec, up.srv.Listener.Addr().String(), func(o *Options) {
		o.UpstreamIdle = -1
	})
	for i := range 2 {
		if _, body := getOnce(t, addr, "/x", true); body != "/x close=true" {
			t.Errorf("body %q: the client's close must reach the upstream", body)
		}
		rec.closes(t, i+1)
	}
	if n := up.opened.Load(); n != 2 {
		t.Errorf("upstream connections %d, want 2", n)
	}
}

func TestUpstreamReusedTLS(t *testing.T) {
	w := newTLSWorld(t)
	rec, addr := w.proxy(t, true)
	for i := range 3 {
		// httpsGet opens a new TLS connection and asks to close it.
		resp, body, err := httpsGet(t, addr, &tls.Config{ServerName: "api.test", RootCAs: w.sideCA}, "")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(body, "hello api.test") || !resp.Close {
			t.Errorf("body %q close=%v", body, resp.Close)
		}
		rec.closes(t, i+1)
	}
	if n := w.upHandshakes.Load(); n != 1 {
		t.Errorf("upstream handshakes %d, want 1 (the connection is kept)", n)
	}
	// Another name is another connection: each is verified for its name.
	if _, _, err := httpsGet(t, addr, &tls.Config{ServerName: "127.0.0.1", RootCAs: w.sideCA}, ""); err != nil {
		t.Fatal(err)
	}
	evs := rec.closes(t, 4)
	if n := w.upHandshakes.Load(); n != 2 {
		t.Errorf("upstream handshakes %d, want 2", n)
	}
	for _, e := range ofKind(evs, event.KindConnOpen) {
		if tl := e.ConnOpen.TLS; tl == nil || !tl.Intercepted || tl.Version == "" || tl.Cipher == "" {
			t.Errorf("conn.open tls %+v", tl)
		}
	}
}

// A destination the pool keeps connections to is heard client first; a
// client that stays silent, waiting for a server that speaks first, still
// gets its server's greeting.
func TestUpstreamKnownButServerSpeaksFirst(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for n := 0; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(first bool) {
				defer c.Close()
				if !first {
					_, _ = io.WriteString(c, "BANNER\r\n")
					_, _ = io.Copy(io.Discard, c)
					return
				}
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
			}(n == 0)
		}
	}()
	rec := newMemRecorder()
	_, addr := startProxy(t, rec, ln.Addr().String(), func(o *Options) { o.clientFirstWait = clientFirstWait })
	if _, body := getOnce(t, addr, "/", false); body != "ok" {
		t.Fatalf("body %q", body)
	}
	rec.closes(t, 1) // the HTTP connection is kept

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second)) // a safety net
	b := make([]byte, 8)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "BANNER\r\n" {
		t.Fatalf("read %q, %v; want the server's greeting", b, err)
	}
}

// The pool keeps at most maxIdlePerKey connections per key and maxIdle in
// all, closing what does not fit, and forgets what it hands out.
func TestUpstreamPoolBounds(t *testing.T) {
	p := newUpstreamPool(time.Minute, newMetrics(nil).idle)
	var closed atomic.Int32
	// Connections that are never handed out: closing one only counts.
	conn := func(key poolKey) *upstreamConn {
		return &upstreamConn{tcp: &net.TCPConn{}, key: key, forget: func() { closed.Add(1) }}
	}
	for i := range maxIdle + 10 {
		key := poolKey{dst: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(1000+i%8))}
		p.put(conn(key))
	}
	// 8 keys of at most 16: 64 kept, the rest closed.
	if p.total != maxIdle || closed.Load() != 10 || testutil.ToFloat64(p.idleGauge) != maxIdle {
		t.Errorf("kept %d (gauge %v), closed %d; want %d and 10", p.total, testutil.ToFloat64(p.idleGauge), closed.Load(), maxIdle)
	}
	one := poolKey{dst: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 2}), 1)}
	p.closeAll()
	if p.total != 0 || len(p.idle) != 0 || len(p.dests) != 0 || closed.Load() != maxIdle+10 {
		t.Errorf("after closeAll: kept %d, closed %d", p.total, closed.Load())
	}
	p.put(conn(one))
	if closed.Load() != maxIdle+11 {
		t.Error("a put after closeAll was kept")
	}
}
