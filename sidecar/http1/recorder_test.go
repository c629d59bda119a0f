package http1

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// scripted is an upstream that reads what the test expects and answers
// with fixed bytes, so that the tests control the wire exactly.
func scripted(t *testing.T, serve func(c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c, bufio.NewReader(c))
			}()
		}
	}()
	return ln.Addr().String()
}

func TestRelayKeepAliveAndBodies(t *testing.T) {
	big := strings.Repeat("x", 10000)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/echo":
			w.Header().Set("Set-Cookie", "s=secret")
			_, _ = w.Write(body)
		case "/big":
			_, _ = io.WriteString(w, big)
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		default:
			_, _ = io.WriteString(w, "hello")
		}
	}))
	defer up.Close()

	sink := &memSink{}
	rec := New(Options{BodyCap: 8000, InlineLimit: 100})
	addr, stats := relayTo(t, rec, up.Listener.Addr().String(), sink)

	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	do := func(method, path, body string) string {
		req, _ := http.NewRequestWithContext(t.Context(), method, "http://"+addr+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer top")
		req.Header.Set("Cookie", "a=b")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := do("POST", "/echo", `{"a":1}`); got != `{"a":1}` {
		t.Errorf("echo = %q", got)
	}
	if got := do("GET", "/big", ""); got != big {
		t.Errorf("big body len %d", len(got))
	}
	do("HEAD", "/", "")
	do("GET", "/empty", "")
	tr.CloseIdleConnections()
	st := <-stats
	if st.Err != nil || st.ParseErr != nil || st.Requests != 4 || st.Responses != 4 {
		t.Fatalf("stats %+v", st)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if want := "req resp req blob resp req resp req resp"; strings.Join(sink.order, " ") != want {
		t.Errorf("order %v, want %s", sink.order, want)
	}
	r0, p0 := sink.reqs[0], sink.resps[0]
	if r0.Method != "POST" || r0.URL != "/echo" || r0.Body == nil || r0.Body.Text != `{"a":1}` || r0.Stream != 1 {
		t.Errorf("request 1 = %+v body %+v", r0, r0.Body)
	}
	for _, h := range []string{"Authorization", "Cookie"} {
		if v := r0.Headers[h]; len(v) != 1 || v[0] != Redacted {
			t.Errorf("%s = %v", h, v)
		}
	}
	if v := p0.Headers["Set-Cookie"]; len(v) != 1 || v[0] != Redacted {
		t.Errorf("Set-Cookie = %v", v)
	}
	if p0.Status != 200 || p0.Stream != 1 || p0.Duration <= 0 {
		t.Errorf("response 1 = %+v", p0)
	}
	p1 := sink.resps[1]
	if p1.Body == nil || !p1.Body.Truncated || p1.Body.Size != 10000 || p1.Body.Recorded != 8000 || p1.Body.Ref == "" {
		t.Errorf("big body = %+v", p1.Body)
	}
	if b := sink.blobs[p1.Body.Ref]; string(b) != big[:8000] || BlobRef(b) != p1.Body.Ref {
		t.Errorf("blob of %d bytes", len(b))
	}
	if sink.reqs[2].Method != "HEAD" || sink.resps[2].Body != nil || sink.resps[3].Status != 204 || sink.resps[3].Stream != 4 {
		t.Errorf("head/204: %+v %+v", sink.resps[2], sink.resps[3])
	}
}

// TestRelayStreamsChunks checks that a chunked response reaches the client
// chunk by chunk: the upstream sends the last chunk only after the client
// confirmed it received the first.
func TestRelayStreamsChunks(t *testing.T) {
	gotFirst := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "first")
		w.(http.Flusher).Flush()
		select {
		case <-gotFirst:
		case <-time.After(10 * time.Second):
			return // the test fails on the client side
		}
		_, _ = io.WriteString(w, "last")
	}))
	defer up.Close()
	sink := &memSink{}
	addr, stats := relayTo(t, New(Options{}), up.Listener.Addr().String(), sink)
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first" {
		t.Fatalf("first chunk %q %v", buf, err)
	}
	close(gotFirst)
	rest, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(rest) != "last" {
		t.Fatalf("rest %q", rest)
	}
	http.DefaultClient.CloseIdleConnections()
	<-stats
	if b := sink.resps[0].Body; b == nil || b.Text != "firstlast" {
		t.Errorf("recorded body %+v", b)
	}
}

func TestRelayScripted(t *testing.T) {
	tests := []struct {
		name     string
		client   string // sent at once, then the client half-closes
		server   string // sent after reading the whole request stream
		head     int    // if set, the server answers after this many bytes
		wantReqs int
		check    func(t *testing.T, s *memSink, st Stats)
	}{
		{
			name:     "read to EOF",
			client:   "GET / HTTP/1.0\r\n\r\n",
			server:   "HTTP/1.0 200 OK\r\n\r\nuntil close",
			wantReqs: 1,
			check: func(t *testing.T, s *memSink, st Stats) {
				if b := s.resps[0].Body; b == nil || b.Text != "until close" {
					t.Errorf("body %+v", b)
				}
			},
		},
		{
			name:     "100 continue",
			client:   "PUT /f HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
			server:   "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
			wantReqs: 1,
			check: func(t *testing.T, s *memSink, st Stats) {
				if len(s.resps) != 1 || s.resps[0].Status != 201 || s.reqs[0].Body.Text != "abc" {
					t.Errorf("resps %+v", s.resps)
				}
			},
		},
		{
			name:     "chunked request with trailer",
			client:   "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
			server:   "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n2\r\n0\r\n\r\n",
			wantReqs: 2,
			check: func(t *testing.T, s *memSink, st Stats) {
				if s.reqs[0].Body.Text != "abcde" || s.reqs[1].URL != "/2" || s.resps[1].Body.Text != "2" || s.resps[1].Stream != 2 {
					t.Errorf("reqs %+v resps %+v", s.reqs, s.resps)
				}
			},
		},
		{
			name:     "malformed request falls back to raw",
			client:   "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /x HTTP/1.1\r\nbad header line\r\n\r\nmore raw bytes",
			server:   "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 400 Bad\r\n\r\n",
			wantReqs: 1,
			check: func(t *testing.T, s *memSink, st Stats) {
				if st.ParseErr == nil || !strings.Contains(st.ParseErr.Error(), "request message 2") {
					t.Errorf("parse err %v", st.ParseErr)
				}
			},
		},
		{
			name:     "malformed response",
			client:   "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
			server:   "HTTP/1.1 abc\r\n\r\nzzz",
			wantReqs: 1,
			check: func(t *testing.T, s *memSink, st Stats) {
				if len(s.resps) != 1 || s.resps[0].Error == "" || st.ParseErr == nil {
					t.Errorf("resps %+v err %v", s.resps, st.ParseErr)
				}
			},
		},
		{
			name:     "upgrade",
			client:   "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05hello",
			server:   "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x02hi",
			head:     len("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"),
			wantReqs: 1,
			check: func(t *testing.T, s *memSink, st Stats) {
				if !st.Upgraded || s.resps[0].Status != 101 || st.ParseErr != nil {
					t.Errorf("stats %+v resps %+v", st, s.resps)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gotUp := make(chan []byte, 1)
			up := scripted(t, func(c net.Conn, br *bufio.Reader) {
				if tt.head > 0 {
					head := make([]byte, tt.head)
					_, _ = io.ReadFull(br, head)
					_, _ = io.WriteString(c, tt.server)
					rest, _ := io.ReadAll(br)
					gotUp <- append(head, rest...)
					return
				}
				b, _ := io.ReadAll(br)
				gotUp <- b
				_, _ = io.WriteString(c, tt.server)
			})
			sink := &memSink{}
			addr, stats := relayTo(t, New(Options{PairWait: 5 * time.Second}), up, sink)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, tt.client); err != nil {
				t.Fatal(err)
			}
			_ = c.(*net.TCPConn).CloseWrite()
			down, _ := io.ReadAll(c)
			st := <-stats
			if got := <-gotUp; !bytes.Equal(got, []byte(tt.client)) {
				t.Errorf("upstream got %q", got)
			}
			if string(down) != tt.server {
				t.Errorf("client got %q", down)
			}
			if st.BytesUp != int64(len(tt.client)) || st.BytesDown != int64(len(tt.server)) || st.Err != nil {
				t.Errorf("stats %+v", st)
			}
			sink.mu.Lock()
			defer sink.mu.Unlock()
			if len(sink.reqs) != tt.wantReqs {
				t.Fatalf("%d requests recorded, want %d", len(sink.reqs), tt.wantReqs)
			}
			tt.check(t, sink, st)
		})
	}
}

// byteConn is a Conn over fixed input that collects what is written to it.
// Writes are serialised, as a net.Conn's are: a gated relay's refusal and
// the upstream's bytes may be written to the client from two goroutines.
type byteConn struct {
	r   *bytes.Reader
	mu  sync.Mutex
	out bytes.Buffer
}

func (b *byteConn) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *byteConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.out.Write(p)
}
func (b *byteConn) CloseWrite() error { return nil }
func (b *byteConn) Close() error      { return nil }

func FuzzRelay(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	f.Add([]byte("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), []byte("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"))
	f.Add([]byte("HEAD / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n"), []byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHTTP/1.1 200 OK\r\n\r\nrest"))
	f.Add([]byte("GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\nraw"), []byte("HTTP/1.1 101 S\r\n\r\nraw"))
	f.Add([]byte("CONNECT a:443 HTTP/1.1\r\n\r\n\x16\x03"), []byte("HTTP/1.1 200 OK\r\n\r\n\x16\x03"))
	f.Add([]byte("\x00\x01garbage"), []byte("HTTP/1.1 -1\r\n"))
	f.Fuzz(func(t *testing.T, client, server []byte) {
		c := &byteConn{r: bytes.NewReader(client)}
		u := &byteConn{r: bytes.NewReader(server)}
		st := New(Options{BodyCap: 64, InlineLimit: 16, PairWait: time.Millisecond, MaxHeaderBytes: 4096}).
			Relay(t.Context(), Pair{Client: c, Upstream: u}, &memSink{})
		if !bytes.Equal(u.out.Bytes(), client) {
			t.Fatalf("upstream got %q, client sent %q", u.out.Bytes(), client)
		}
		if !bytes.Equal(c.out.Bytes(), server) {
			t.Fatalf("client got %q, server sent %q", c.out.Bytes(), server)
		}
		if st.BytesUp != int64(len(client)) || st.BytesDown != int64(len(server)) {
			t.Fatalf("counted %d/%d, want %d/%d", st.BytesUp, st.BytesDown, len(client), len(server))
		}
		if st.Err != nil {
			t.Fatalf("relay error %v", st.Err)
		}
		_ = fmt.Sprint(st.ParseErr)
	})
}
