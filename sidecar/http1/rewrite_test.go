package http1

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// upperSink rewrites text/plain and text/event-stream bodies to upper
// case; other responses pass.
type upperSink struct{ memSink }

func (*upperSink) RewritesResponses() bool { return true }

func (*upperSink) RewriteResponse(_, _ string, _ int, h http.Header) BodyRewriter {
	switch h.Get("Content-Type") {
	case "text/plain":
		return &upper{}
	case "text/event-stream":
		return &upper{stream: true}
	}
	return nil
}

type upper struct {
	stream bool
	held   []byte
}

func (u *upper) Write(p []byte) []byte {
	if u.stream {
		return bytes.ToUpper(p)
	}
	u.held = append(u.held, p...)
	return nil
}
func (u *upper) Close() []byte { return bytes.ToUpper(u.held) }
func (u *upper) Stream() bool  { return u.stream }

// TestRewriteKeepsOthersByteForByte pipelines three responses on one
// connection: one not rewritten (chunked with extensions and a trailer)
// must reach the client byte for byte; a Content-Length one is rewritten
// with its new length, an event stream chunked.
func TestRewriteKeepsOthersByteForByte(t *testing.T) {
	raw := "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n" +
		"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Sum: 5\r\n\r\n"
	up := scripted(t, func(c net.Conn, br *bufio.Reader) {
		for range 3 {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
		}
		_, _ = io.WriteString(c, raw)
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nsecret-ok")
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\ndata: one\n\ndata: two\n\n")
	})
	sink := &upperSink{}
	addr, stats := relayTo(t, New(Options{}), up, sink)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n")
	_ = c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(got, []byte(raw)) {
		t.Fatalf("the response not rewritten changed:\n%q", got)
	}
	br := bufio.NewReader(bytes.NewReader(got[len(raw):]))
	for _, want := range []string{"SECRET-OK", "DATA: ONE\n\nDATA: TWO\n\n"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil || string(b) != want {
			t.Errorf("body %q, %v; want %q", b, err, want)
		}
		if want == "SECRET-OK" && resp.ContentLength != 9 {
			t.Errorf("content length %d", resp.ContentLength)
		}
		if strings.HasPrefix(want, "DATA") && resp.TransferEncoding == nil {
			t.Errorf("event stream not chunked: %+v", resp.Header)
		}
	}
	st := <-stats
	if st.Err != nil || st.ParseErr != nil || st.Responses != 3 {
		t.Fatalf("stats %+v", st)
	}
	// The record holds what upstream sent.
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if b := sink.resps[1].Body; b == nil || b.Text != "secret-ok" {
		t.Errorf("recorded %+v", b)
	}
}
