package http1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// reuseRelay relays the clients it accepts, one at a time, through r to
// upstream with Pair.Reuse, handing the upstream connection to the next
// client whenever Relay says it may. dials counts the upstream dials.
func reuseRelay(t *testing.T, r *Recorder, upstream string, sink Sink) (addr string, stats <-chan Stats, dials *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	out := make(chan Stats, 16)
	dials = &atomic.Int32{}
	go func() {
		var idle *net.TCPConn
		defer func() {
			if idle != nil {
				idle.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u := idle
			idle = nil
			if u == nil {
				uc, err := net.Dial("tcp", upstream)
				if err != nil {
					t.Error(err)
					c.Close()
					return
				}
				dials.Add(1)
				u = uc.(*net.TCPConn)
			}
			st := r.Relay(t.Context(), Pair{Client: c.(*net.TCPConn), Upstream: u, Reuse: true}, sink)
			c.Close()
			if st.Reusable {
				idle = u
			} else {
				u.Close()
			}
			out <- st
		}
	}()
	return ln.Addr().String(), out, dials
}

// closeReporter answers every request with its path and whether the
// request asked to close the connection, and counts connections.
func closeReporter(t *testing.T, extra func(w http.ResponseWriter, r *http.Request)) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var conns atomic.Int32
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if extra != nil {
			extra(w, r)
		}
		fmt.Fprintf(w, "%s close=%v", r.URL.Path, r.Close)
	}))
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	up.Start()
	t.Cleanup(up.Close)
	return up, &conns
}

// exchange1 sends raw on a new connection to addr and returns the
// response, and whether the connection then ended (EOF).
func exchange1(t *testing.T, addr, raw string, halfClose bool) (*http.Response, string, bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	if halfClose {
		_ = c.(*net.TCPConn).CloseWrite()
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second)) // a safety net: EOF comes at once
	_, err = br.ReadByte()
	return resp, string(body), errors.Is(err, io.EOF)
}

func TestReuseAcrossClients(t *testing.T) {
	up, conns := closeReporter(t, nil)
	sink := &memSink{}
	addr, stats, dials := reuseRelay(t, New(Options{}), up.Listener.Addr().String(), sink)

	for i := range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		for j := range 2 {
			fmt.Fprintf(c, "GET /c%d/r%d HTTP/1.1\r\nHost: up\r\n\r\n", i, j)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			if want := fmt.Sprintf("/c%d/r%d close=false", i, j); string(b) != want || resp.Close {
				t.Errorf("client %d: %q close=%v, want %q", i, b, resp.Close, want)
			}
		}
		c.Close()
		if st := <-stats; !st.Reusable || st.Requests != 2 || st.Responses != 2 || st.Err != nil {
			t.Errorf("client %d: stats %+v", i, st)
		}
	}
	if d, n := dials.Load(), conns.Load(); d != 1 || n != 1 {
		t.Errorf("dials %d, upstream connections %d; want 1 and 1", d, n)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.reqs) != 6 || len(sink.resps) != 6 {
		t.Fatalf("%d requests, %d responses recorded", len(sink.reqs), len(sink.resps))
	}
}

func TestReuseAnswersConnectionClose(t *testing.T) {
	up, conns := closeReporter(t, nil)
	sink := &memSink{}
	addr, stats, _ := reuseRelay(t, New(Options{}), up.Listener.Addr().String(), sink)

	for i := range 3 {
		// A request the client pipelines after its close must not reach
		// the upstream connection that is kept.
		raw := fmt.Sprintf("GET /%d HTTP/1.1\r\nHost: up\r\nConnection: keep-alive, close\r\n\r\nGET /never HTTP/1.1\r\nHost: up\r\n\r\n", i)
		resp, body, closed := exchange1(t, addr, raw, false)
		if want := fmt.Sprintf("/%d close=false", i); body != want {
			t.Errorf("body %q, want %q (the upstream must not see the close)", body, want)
		}
		if !resp.Close {
			t.Errorf("response %d does not tell the client the connection closes: %v", i, resp.Header)
		}
		if !closed {
			t.Errorf("client %d: connection not closed by the relay", i)
		}
		if st := <-stats; !st.Reusable || st.Requests != 1 {
			t.Errorf("client %d: stats %+v", i, st)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("upstream connections %d, want 1", n)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	for _, r := range sink.reqs {
		if r.URL == "/never" {
			t.Error("the request after the close was forwarded")
		}
		if got := r.Headers["Connection"]; len(got) != 1 || got[0] != "keep-alive, close" {
			t.Errorf("recorded Connection %v, want the client's", got)
		}
	}
}

func TestReuseHalfClosedClient(t *testing.T) {
	up, conns := closeReporter(t, nil)
	addr, stats, _ := reuseRelay(t, New(Options{}), up.Listener.Addr().String(), &memSink{})
	for i := range 2 {
		_, body, closed := exchange1(t, addr, fmt.Sprintf("GET /h%d HTTP/1.1\r\nHost: up\r\n\r\n", i), true)
		if want := fmt.Sprintf("/h%d close=false", i); body != want || !closed {
			t.Errorf("body %q closed=%v, want %q", body, closed, want)
		}
		if st := <-stats; !st.Reusable {
			t.Errorf("stats %+v", st)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("upstream connections %d, want 1", n)
	}
}

func TestReuseNotWhenUnfit(t *testing.T) {
	up, conns := closeReporter(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/bye" {
			w.Header().Set("Connection", "close")
		}
	})
	addr, stats, dials := reuseRelay(t, New(Options{}), up.Listener.Addr().String(), &memSink{})
	cases := []struct {
		name, raw string
	}{
		{"upstream closes", "GET /bye HTTP/1.1\r\nHost: up\r\n\r\n"},
		{"HTTP/1.0", "GET /old HTTP/1.0\r\nHost: up\r\n\r\n"},
		{"HTTP/1.0 keep-alive", "GET /old HTTP/1.0\r\nHost: up\r\nConnection: keep-alive\r\n\r\n"},
	}
	for _, tc := range cases {
		_, body, _ := exchange1(t, addr, tc.raw, true)
		if !strings.HasPrefix(body, "/") {
			t.Errorf("%s: body %q", tc.name, body)
		}
		if st := <-stats; st.Reusable {
			t.Errorf("%s: reusable", tc.name)
		}
	}
	if d, n := dials.Load(), conns.Load(); d != 3 || n != 3 {
		t.Errorf("dials %d, upstream connections %d; want 3 and 3", d, n)
	}
}

// The gate's hook and the close rewrite both change the head.
func TestReuseWithHook(t *testing.T) {
	var sawToken atomic.Value
	up, _ := closeReporter(t, func(_ http.ResponseWriter, r *http.Request) {
		sawToken.Store(r.Header.Get("Authorization"))
	})
	hook := func(_ context.Context, _ uint64, req *http.Request) (Verdict, error) {
		req.Header.Set("Authorization", "Bearer real")
		return Verdict{Changed: []string{"Authorization"}}, nil
	}
	addr, stats, _ := reuseRelay(t, New(Options{RequestHook: hook}), up.Listener.Addr().String(), &memSink{})
	resp, body, closed := exchange1(t, addr, "GET /k HTTP/1.1\r\nHost: up\r\nAuthorization: Bearer placeholder\r\nConnection: close\r\n\r\n", false)
	if body != "/k close=false" || !resp.Close || !closed {
		t.Errorf("body %q close=%v closed=%v", body, resp.Close, closed)
	}
	if got := sawToken.Load(); got != "Bearer real" {
		t.Errorf("upstream saw Authorization %v", got)
	}
	if st := <-stats; !st.Reusable {
		t.Errorf("stats %+v", st)
	}
}

// writeCounter counts the writes relayed to a connection.
type writeCounter struct {
	*net.TCPConn
	writes atomic.Int32
}

func (w *writeCounter) Write(p []byte) (int, error) {
	w.writes.Add(1)
	return w.TCPConn.Write(p)
}

// A message that arrives in one piece leaves in one write, its head
// rewritten or not: a write more per message is a wake-up more for the
// peer.
func TestHeadAndBodyInOneWrite(t *testing.T) {
	up := scripted(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
		}
	})
	hook := func(context.Context, uint64, *http.Request) (Verdict, error) { return Verdict{}, nil }
	for _, tc := range []struct {
		name  string
		reuse bool
		req   string
	}{
		{"post", true, "POST / HTTP/1.1\r\nHost: up\r\nContent-Length: 3\r\n\r\nabc"},
		{"post, close", true, "POST / HTTP/1.1\r\nHost: up\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc"},
		{"get, no reuse", false, "GET / HTTP/1.1\r\nHost: up\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			done := make(chan [2]int32, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				u, err := net.Dial("tcp", up)
				if err != nil {
					return
				}
				defer u.Close()
				cw := &writeCounter{TCPConn: c.(*net.TCPConn)}
				uw := &writeCounter{TCPConn: u.(*net.TCPConn)}
				New(Options{RequestHook: hook}).Relay(t.Context(), Pair{Client: cw, Upstream: uw, Reuse: tc.reuse}, &memSink{})
				done <- [2]int32{uw.writes.Load(), cw.writes.Load()}
			}()
			_, body, _ := exchange1(t, ln.Addr().String(), tc.req, true)
			if body != "hello" {
				t.Fatalf("body %q", body)
			}
			w := <-done
			if w[0] != 1 || w[1] != 1 {
				t.Errorf("writes upstream %d, to the client %d; want 1 and 1", w[0], w[1])
			}
		})
	}
}

// deadlineConn is a byteConn with read deadlines, as Reuse needs.
type deadlineConn struct{ byteConn }

func (*deadlineConn) SetReadDeadline(time.Time) error { return nil }

// FuzzReuseRelay runs the relay with Reuse on any input: it ends, a
// reusable result comes only from a clean relay, and unless the client
// asked to close (the one thing Reuse rewrites) both peers get exactly
// what the other sent.
func FuzzReuseRelay(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	f.Add([]byte("GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET /x HTTP/1.1\r\n\r\n"), []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	f.Add([]byte("POST / HTTP/1.1\r\nConnection: keep-alive, Close\r\nContent-Length: 3\r\n\r\nabc"), []byte("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.0\r\n\r\n"), []byte("HTTP/1.0 200 OK\r\n\r\nbody until EOF"))
	f.Add([]byte("GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\nraw"), []byte("HTTP/1.1 101 S\r\n\r\nraw"))
	f.Add([]byte("\x00\x01garbage"), []byte("HTTP/1.1 -1\r\n"))
	f.Fuzz(func(t *testing.T, client, server []byte) {
		c := &deadlineConn{byteConn{r: bytes.NewReader(client)}}
		u := &deadlineConn{byteConn{r: bytes.NewReader(server)}}
		st := New(Options{BodyCap: 64, InlineLimit: 16, PairWait: time.Millisecond, MaxHeaderBytes: 4096}).
			Relay(t.Context(), Pair{Client: c, Upstream: u, Reuse: true}, &memSink{})
		if st.Reusable && (st.Err != nil || st.ParseErr != nil || st.Upgraded) {
			t.Fatalf("reusable after %+v", st)
		}
		if bytes.Contains(bytes.ToLower(client), []byte("close")) {
			return
		}
		if !bytes.Equal(u.out.Bytes(), client) {
			t.Fatalf("upstream got %q, client sent %q", u.out.Bytes(), client)
		}
		if !bytes.Equal(c.out.Bytes(), server) {
			t.Fatalf("client got %q, server sent %q", c.out.Bytes(), server)
		}
	})
}
