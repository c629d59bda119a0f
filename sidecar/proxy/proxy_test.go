package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/sidecar/http1"
)

// proxiedClient is an HTTP client whose every connection goes to the
// proxy at addr, whatever the URL says, as the nftables redirect would.
func proxiedClient(t testing.TB, addr string) *http.Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		},
		MaxIdleConnsPerHost: 1,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func TestHTTPExchanges(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Set-Cookie", "session=abc")
		if r.URL.Path == "/missing" {
			w.WriteHeader(http.StatusNotFound)
		}
		_, _ = w.Write(append([]byte(`{"got":`), append(body, '}')...))
	}))
	defer up.Close()
	rec := newMemRecorder()
	_, addr := startProxy(t, rec, up.Listener.Addr().String(), nil)
	client := proxiedClient(t, addr)

	do := func(method, path, body string) string {
		req, err := http.NewRequestWithContext(t.Context(), method, "http://api.internal"+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer s3cr3t")
		req.Header.Set("Proxy-Authorization", "Basic eDp5")
		req.Header.Set("Cookie", "id=42")
		req.Header.Set("X-Plain", "visible")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	// Keep-alive: three exchanges on one connection.
	if got := do("POST", "/v1/items", `{"a":1}`); got != `{"got":{"a":1}}` {
		t.Errorf("POST got %q", got)
	}
	do("GET", "/v1/items", "")
	do("GET", "/missing", "")
	client.CloseIdleConnections()

	evs := rec.closes(t, 1)
	kinds := make([]string, len(evs))
	for i, e := range evs {
		kinds[i] = string(e.Kind)
		if e.Conn == "" || e.Conn != evs[0].Conn {
			t.Errorf("event %d conn %q, want one connection id", i, e.Conn)
		}
		if e.Identity == nil || e.Identity.Pod != "agent-0" || e.Source != event.SourceSidecar {
			t.Errorf("event %d identity %+v source %q", i, e.Identity, e.Source)
		}
		if err := e.Validate(); err != nil {
			t.Errorf("event %d: %v", i, err)
		}
	}
	want := "conn.open http.request http.response http.request http.response http.request http.response conn.close"
	if got := strings.Join(kinds, " "); got != want {
		t.Fatalf("events\n got %s\nwant %s", got, want)
	}
	open := evs[0]
	if open.Dest.Addr != up.Listener.Addr().String() || open.Dest.Protocol != "http1" || open.ConnOpen.Refused != "" {
		t.Errorf("conn.open %+v %+v", open.Dest, open.ConnOpen)
	}
	post := evs[1].HTTPRequest
	if post.Method != "POST" || post.URL != "/v1/items" || post.Host != "api.internal" || post.Stream != 1 ||
		post.Body == nil || post.Body.Text != `{"a":1}` || post.Body.Size != 7 {
		t.Errorf("POST record %+v body %+v", post, post.Body)
	}
	if evs[1].Dest.Host != "api.internal" {
		t.Errorf("request dest %+v", evs[1].Dest)
	}
	for _, h := range []string{"Authorization", "Proxy-Authorization", "Cookie"} {
		if v := post.Headers[h]; len(v) != 1 || v[0] != http1.Redacted {
			t.Errorf("request header %s = %q", h, v)
		}
	}
	if v := post.Headers["X-Plain"]; len(v) != 1 || v[0] != "visible" {
		t.Errorf("X-Plain = %q", v)
	}
	resp := evs[2].HTTPResponse
	if resp.Status != 200 || resp.Stream != 1 || resp.Body.Text != `{"got":{"a":1}}` || resp.Duration <= 0 {
		t.Errorf("response record %+v", resp)
	}
	if v := resp.Headers["Set-Cookie"]; len(v) != 1 || v[0] != http1.Redacted {
		t.Errorf("Set-Cookie = %q", v)
	}
	if r3, p3 := evs[5].HTTPRequest, evs[6].HTTPResponse; r3.Stream != 3 || p3.Stream != 3 || p3.Status != 404 {
		t.Errorf("third exchange %+v %+v", r3, p3)
	}
	cls := evs[7].ConnClose
	if cls.BytesUp == 0 || cls.BytesDown == 0 || cls.Error != "" || cls.Duration <= 0 {
		t.Errorf("conn.close %+v", cls)
	}
}

func TestChunkedStreamsWithoutBuffering(t *testing.T) {
	clientGotFirst := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-clientGotFirst: // the last chunk goes only after the first arrived
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "data: two\n\n")
	}))
	defer up.Close()
	rec := newMemRecorder()
	_, addr := startProxy(t, rec, up.Listener.Addr().String(), nil)
	resp, err := proxiedClient(t, addr).Get("http://llm/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if len(resp.TransferEncoding) == 0 || resp.TransferEncoding[0] != "chunked" {
		t.Fatalf("response not chunked: %v", resp.TransferEncoding)
	}
	first := make([]byte, len("data: one\n\n"))
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	close(clientGotFirst)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "data: two\n\n" {
		t.Fatalf("rest %q %v", rest, err)
	}
	evs := rec.waitFor(t, "response", func(evs []*event.Event) bool { return len(ofKind(evs, event.KindHTTPResponse)) == 1 })
	if b := ofKind(evs, event.KindHTTPResponse)[0].HTTPResponse.Body; b.Text != "data: one\n\ndata: two\n\n" {
		t.Errorf("recorded %+v", b)
	}
}

func TestLargeBodyOverCap(t *testing.T) {
	big := strings.Repeat("0123456789", 20000) // 200 kB
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Got", strings.Repeat("x", 0)+http.StatusText(200))
		_, _ = io.WriteString(w, big[:n])
	}))
	defer up.Close()
	rec := newMemRecorder()
	_, addr := startProxy(t, rec, up.Listener.Addr().String(), func(o *Options) {
		o.BodyCap = 64 << 10
		o.InlineLimit = 4 << 10
	})
	resp, err := proxiedClient(t, addr).Post("http://x/upload", "text/plain", strings.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != big {
		t.Fatalf("client got %d bytes, want %d (the whole body must flow)", len(got), len(big))
	}
	rec.waitFor(t, "response", func(evs []*event.Event) bool { return len(ofKind(evs, event.KindHTTPResponse)) == 1 })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, e := range rec.events {
		var b *event.Body
		switch e.Kind {
		case event.KindHTTPRequest:
			b = e.HTTPRequest.Body
		case event.KindHTTPResponse:
			b = e.HTTPResponse.Body
		default:
			continue
		}
		if b == nil || !b.Truncated || b.Size != int64(len(big)) || b.Recorded != 64<<10 || b.Ref == "" || b.Text != "" {
			t.Fatalf("%s body %+v", e.Kind, b)
		}
		if data := rec.blobs[b.Ref]; string(data) != big[:64<<10] || http1.BlobRef(data) != b.Ref {
			t.Errorf("%s blob has %d bytes", e.Kind, len(data))
		}
		// The blob went to the recorder before the event naming it.
		blobAt, evAt := -1, -1
		for i, l := range rec.log {
			if l == "blob:"+b.Ref && blobAt < 0 {
				blobAt = i
			}
			if l == string(e.Kind) && evAt < 0 {
				evAt = i
			}
		}
		if blobAt < 0 || blobAt > evAt {
			t.Errorf("%s: blob at %d, event at %d", e.Kind, blobAt, evAt)
		}
	}
}

func TestUpgradePassthrough(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "upgrade required", http.StatusUpgradeRequired)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		_ = brw.Flush()
		_, _ = io.Copy(c, brw) // echo raw bytes until the client half-closes
	}))
	defer up.Close()
	rec := newMemRecorder()
	_, addr := startProxy(t, rec, up.Listener.Addr().String(), nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade response %v %v", resp, err)
	}
	payload := "GET / HTTP/1.1 this is not http any more\x00\x01"
	_, _ = io.WriteString(c, payload)
	_ = c.(*net.TCPConn).CloseWrite()
	echo, _ := io.ReadAll(br)
	if string(echo) != payload {
		t.Fatalf("echo %q", echo)
	}
	evs := rec.closes(t, 1)
	if r := ofKind(evs, event.KindHTTPResponse); len(r) != 1 || r[0].HTTPResponse.Status != 101 {
		t.Fatalf("responses %v", r)
	}
	if n := len(ofKind(evs, event.KindHTTPRequest)); n != 1 {
		t.Errorf("%d requests recorded, want 1 (the rest is raw)", n)
	}
	cls := ofKind(evs, event.KindConnClose)[0].ConnClose
	reqLen := int64(len("GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"))
	if cls.BytesUp != reqLen+int64(len(payload)) || cls.Error != "" {
		t.Errorf("conn.close %+v", cls)
	}
}

// echoServer echoes each connection until the client half-closes.
func echoServer(t testing.TB, greeting string) string {
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
				_, _ = io.WriteString(c, greeting)
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func TestRawTCP(t *testing.T) {
	for _, tt := range []struct {
		name, greeting, send string
	}{
		{"client first", "", "\x00\x01binary protocol\xff"},
		{"server first", "220 smtp.example ESMTP\r\n", "EHLO me\r\n"},
		{"silent", "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := newMemRecorder()
			_, addr := startProxy(t, rec, echoServer(t, tt.greeting), nil)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if tt.greeting != "" {
				// Server-first: the greeting arrives although the client
				// has sent nothing (no sniff timeout is configured).
				g := make([]byte, len(tt.greeting))
				if _, err := io.ReadFull(c, g); err != nil || string(g) != tt.greeting {
					t.Fatalf("greeting %q %v", g, err)
				}
			}
			_, _ = io.WriteString(c, tt.send)
			_ = c.(*net.TCPConn).CloseWrite()
			got, _ := io.ReadAll(c)
			if string(got) != tt.send {
				t.Fatalf("echo %q", got)
			}
			evs := rec.closes(t, 1)
			open, cls := ofKind(evs, event.KindConnOpen)[0], ofKind(evs, event.KindConnClose)[0]
			if open.Dest.Protocol != "tcp" {
				t.Errorf("protocol %q", open.Dest.Protocol)
			}
			if cls.ConnClose.BytesUp != int64(len(tt.send)) || cls.ConnClose.BytesDown != int64(len(tt.greeting)+len(tt.send)) || cls.ConnClose.Error != "" {
				t.Errorf("conn.close %+v", cls.ConnClose)
			}
		})
	}
}

func TestTLSPassthroughRecordsSNI(t *testing.T) {
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "secret stuff")
	}))
	defer up.Close()
	rec := newMemRecorder()
	_, addr := startProxy(t, rec, up.Listener.Addr().String(), nil)
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "example.com", InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
	body, _ := io.ReadAll(c)
	c.Close()
	if !strings.Contains(string(body), "secret stuff") {
		t.Fatalf("got %q", body)
	}
	evs := rec.closes(t, 1)
	open, cls := ofKind(evs, event.KindConnOpen)[0], ofKind(evs, event.KindConnClose)[0]
	if open.Dest.Protocol != "tls" || open.Dest.Host != "example.com" {
		t.Errorf("dest %+v", open.Dest)
	}
	if cls.ConnClose.TLS == nil || cls.ConnClose.TLS.SNI != "example.com" || len(cls.ConnClose.TLS.ALPN) != 1 {
		t.Errorf("tls %+v", cls.ConnClose.TLS)
	}
	if len(ofKind(evs, event.KindHTTPRequest)) != 0 {
		t.Error("TLS content was decoded")
	}
}

// refusedConn expects the proxy to close the client without relaying.
func refusedConn(t *testing.T, addr string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if errors.Is(err, syscall.ECONNRESET) {
		return // reset before the handshake completed on our side: refused
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if b, _ := io.ReadAll(c); len(b) != 0 {
		t.Errorf("refused connection got %q", b)
	}
}

func TestFailClosedAndFailOpen(t *testing.T) {
	up := echoServer(t, "")
	for _, failOpen := range []bool{false, true} {
		name := map[bool]string{false: "fail-closed", true: "fail-open"}[failOpen]
		t.Run(name, func(t *testing.T) {
			rec := newMemRecorder()
			rec.setAccepting(errors.New("spool full"))
			_, addr := startProxy(t, rec, up, func(o *Options) { o.FailOpen = failOpen })
			if !failOpen {
				refusedConn(t, addr)
				evs := rec.waitFor(t, "refusal", func(evs []*event.Event) bool { return len(evs) >= 1 })
				if o := evs[0].ConnOpen; o == nil || !strings.Contains(o.Refused, "recording unavailable: spool full") {
					t.Fatalf("event %+v", evs[0])
				}
				if evs[0].Dest.Addr != up {
					t.Errorf("dest %+v", evs[0].Dest)
				}
				return
			}
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, _ = io.WriteString(c, "ping")
			_ = c.(*net.TCPConn).CloseWrite()
			if b, _ := io.ReadAll(c); string(b) != "ping" {
				t.Fatalf("fail-open echo %q", b)
			}
		})
	}
}

func TestUpstreamRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nothing listens there now
	rec := newMemRecorder()
	_, addr := startProxy(t, rec, dead, nil)
	refusedConn(t, addr)
	evs := rec.waitFor(t, "refusal", func(evs []*event.Event) bool { return len(evs) >= 1 })
	if o := evs[0].ConnOpen; o == nil || !strings.Contains(o.Refused, "upstream unreachable") || !strings.Contains(o.Refused, "refused") {
		t.Fatalf("event %+v", evs[0].ConnOpen)
	}
}

func TestSelfLoopRefused(t *testing.T) {
	rec := newMemRecorder()
	var self string
	_, addr := startProxy(t, rec, "127.0.0.1:1", func(o *Options) {
		o.OriginalDst = func(c *net.TCPConn) (netip.AddrPort, error) {
			return netip.ParseAddrPort(c.LocalAddr().String()) // "originally" to the proxy itself
		}
	})
	self = addr
	refusedConn(t, self)
	evs := rec.waitFor(t, "refusal", func(evs []*event.Event) bool { return len(evs) >= 1 })
	if o := evs[0].ConnOpen; o == nil || !strings.Contains(o.Refused, "own listener") {
		t.Fatalf("event %+v", evs[0].ConnOpen)
	}
	if len(evs) != 1 {
		t.Errorf("%d events, want only the refusal", len(evs))
	}
}

func TestShutdown(t *testing.T) {
	rec := newMemRecorder()
	p, addr := startProxy(t, rec, echoServer(t, ""), nil)
	open := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(c, "x")
		b := make([]byte, 1)
		if _, err := io.ReadFull(c, b); err != nil { // relayed: the proxy handles it
			t.Fatal(err)
		}
		return c
	}
	drained, stuck := open(), open()
	defer stuck.Close()

	// A connection that ends during the grace period counts as drained.
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Shutdown(ctx) }()
	_ = drained.(*net.TCPConn).CloseWrite()
	_, _ = io.ReadAll(drained)
	drained.Close()
	rec.closes(t, 1)
	if p.Ready() == nil {
		t.Error("ready while shutting down")
	}
	cancel() // the grace period ends; stuck is cut
	err := <-done
	if err == nil || !strings.Contains(err.Error(), "closed 1 live connections") {
		t.Fatalf("shutdown: %v", err)
	}
	evs := rec.closes(t, 2)
	cut := ofKind(evs, event.KindConnClose)[1].ConnClose
	if !strings.Contains(cut.Error, errCut.Error()) {
		t.Errorf("cut conn.close %+v", cut)
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Error("still accepting after shutdown")
	}
}

func TestConnIDsUnique(t *testing.T) {
	rec := newMemRecorder()
	_, addr := startProxy(t, rec, echoServer(t, ""), nil)
	for range 5 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.(*net.TCPConn).CloseWrite()
		_, _ = io.ReadAll(c)
		c.Close()
	}
	evs := rec.closes(t, 5)
	seen := map[string]bool{}
	for _, e := range ofKind(evs, event.KindConnOpen) {
		if seen[e.Conn] {
			t.Errorf("duplicate conn id %s", e.Conn)
		}
		seen[e.Conn] = true
	}
}
