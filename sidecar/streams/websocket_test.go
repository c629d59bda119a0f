package streams

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// tapConn records the bytes a client connection writes and reads.
type tapConn struct {
	net.Conn
	mu      sync.Mutex
	out, in bytes.Buffer
}

func (c *tapConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.out.Write(p)
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *tapConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.in.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

// afterHandshake strips the HTTP upgrade request or response.
func afterHandshake(t *testing.T, b []byte) []byte {
	t.Helper()
	i := bytes.Index(b, []byte("\r\n\r\n"))
	if i < 0 {
		t.Fatalf("no HTTP handshake in %q", b)
	}
	return b[i+4:]
}

// capture runs a real gorilla/websocket exchange over loopback: server
// plays the API server, client plays kubectl. It returns the raw bytes
// each way after the upgrade.
func capture(t *testing.T, protocol string, server func(*websocket.Conn), client func(*websocket.Conn)) (fromClient, fromServer []byte) {
	t.Helper()
	up := websocket.Upgrader{Subprotocols: []string{protocol}}
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(done)
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			t.Errorf("upgrade: %v", err)
			return
		}
		defer c.Close()
		server(c)
	}))
	defer srv.Close()
	var tap *tapConn
	dialer := websocket.Dialer{
		Subprotocols:    []string{protocol},
		WriteBufferSize: 1024, // small, so long messages go out fragmented
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			tap = &tapConn{Conn: c}
			return tap, nil
		},
	}
	c, resp, err := dialer.DialContext(t.Context(), "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	resp.Body.Close()
	if got := c.Subprotocol(); got != protocol {
		t.Fatalf("subprotocol %q, want %q", got, protocol)
	}
	client(c)
	// Read until the server closes, so every server byte passes the tap.
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			break
		}
	}
	c.Close()
	<-done
	tap.mu.Lock()
	defer tap.mu.Unlock()
	return afterHandshake(t, tap.out.Bytes()), afterHandshake(t, tap.in.Bytes())
}

func msg(ch byte, s string) []byte { return append([]byte{ch}, s...) }

func TestWebSocketExec(t *testing.T) {
	bigIn := strings.Repeat("abcdefghij", 500) // fragmented by the client
	serverSide := func(c *websocket.Conn) {
		_ = c.WriteMessage(websocket.BinaryMessage, msg(chStdout, "hello\r\n"))
		// Read stdin, resize and the big message.
		for range 4 {
			if _, _, err := c.ReadMessage(); err != nil {
				t.Errorf("server read: %v", err)
				return
			}
		}
		_ = c.WriteMessage(websocket.BinaryMessage, msg(chStderr, "oops\n"))
		_ = c.WriteMessage(websocket.BinaryMessage, msg(chError,
			`{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}`))
		_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	}
	clientSide := func(c *websocket.Conn) {
		_ = c.WriteControl(websocket.PingMessage, []byte("ping"), deadline())
		_ = c.WriteMessage(websocket.BinaryMessage, msg(chStdin, "ls -l\n"))
		_ = c.WriteMessage(websocket.BinaryMessage, msg(chResize, `{"Width":120,"Height":40}`))
		w, _ := c.NextWriter(websocket.BinaryMessage)
		_, _ = w.Write(msg(chStdin, bigIn[:2000]))
		_, _ = w.Write([]byte(bigIn[2000:]))
		_ = w.Close()
		_ = c.WriteMessage(websocket.BinaryMessage, []byte{chClose, chStdin})
	}
	cb, sb := capture(t, ProtocolChannelV5, serverSide, clientSide)
	if bytes.Count(cb, []byte{0x00}) == 0 {
		t.Fatal("expected continuation frames from the client")
	}
	want := []string{
		"exec-1 stdout hello\r\n",
		"exec-1 stdin ls -l\n",
		"exec-1 resize 120x40",
		"exec-1 stdin " + bigIn,
		"exec-1 stderr oops\n",
		"exec-1 exit 3",
	}
	for _, size := range []int{1, 3, 7, 1 << 20} {
		var col collector
		d := NewWebSocket(ProtocolChannelV5, col.emit, WithStream("exec-1"))
		// The order of the two directions as a proxy sees them: server
		// greeting first, then the client's messages, then the rest.
		first := len(frameAt(sb, 1))
		feedSplit(d.ServerBytes, sb[:first], size)
		feedSplit(d.ClientBytes, cb, size)
		feedSplit(d.ServerBytes, sb[first:], size)
		d.Close()
		if got := col.transcript(); !equalLines(got, want) {
			t.Errorf("split %d:\n got %q\nwant %q", size, got, want)
		}
	}
}

// frameAt returns the first n unmasked frames of b.
func frameAt(b []byte, n int) []byte {
	off := 0
	for range n {
		h := wsHeaderLen(b[off], b[off+1])
		l := int(b[off+1] & 0x7F)
		switch l {
		case 126:
			l = int(binary.BigEndian.Uint16(b[off+2:]))
		case 127:
			l = int(binary.BigEndian.Uint64(b[off+2:]))
		}
		off += h + l
	}
	return b[:off]
}

func TestWebSocketBase64(t *testing.T) {
	serverSide := func(c *websocket.Conn) {
		_ = c.WriteMessage(websocket.TextMessage, []byte("1"+"aGVsbG8gd29ybGQK")) // "hello world\n"
		if _, _, err := c.ReadMessage(); err != nil {
			t.Errorf("server read: %v", err)
		}
		_ = c.WriteMessage(websocket.TextMessage, []byte("3"+"eyJzdGF0dXMiOiJTdWNjZXNzIn0=")) // {"status":"Success"}
		_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	}
	clientSide := func(c *websocket.Conn) {
		_ = c.WriteMessage(websocket.TextMessage, []byte("0"+"ZXhpdAo=")) // "exit\n"
	}
	cb, sb := capture(t, ProtocolBase64V4, serverSide, clientSide)
	var col collector
	d := NewWebSocket(ProtocolBase64V4, col.emit, WithStream("attach-2"))
	feedSplit(d.ServerBytes, frameAt(sb, 1), 2)
	feedSplit(d.ClientBytes, cb, 2)
	feedSplit(d.ServerBytes, sb[len(frameAt(sb, 1)):], 2)
	d.Close()
	want := []string{"attach-2 stdout hello world\n", "attach-2 stdin exit\n", "attach-2 exit 0"}
	if got := col.transcript(); !equalLines(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

func TestWebSocketPortForward(t *testing.T) {
	port := func(ch byte, p uint16) []byte {
		return []byte{ch, byte(p), byte(p >> 8)}
	}
	serverSide := func(c *websocket.Conn) {
		for ch, p := range map[byte]uint16{0: 8080, 1: 8080} {
			_ = c.WriteMessage(websocket.BinaryMessage, port(ch, p))
		}
		if _, _, err := c.ReadMessage(); err != nil {
			t.Errorf("server read: %v", err)
		}
		_ = c.WriteMessage(websocket.BinaryMessage, msg(0, "HTTP/1.1 200 OK\r\n\r\n"))
		_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	}
	clientSide := func(c *websocket.Conn) {
		// Wait for the port prefixes, as kubectl does.
		for range 2 {
			if _, _, err := c.ReadMessage(); err != nil {
				t.Errorf("client read: %v", err)
			}
		}
		_ = c.WriteMessage(websocket.BinaryMessage, msg(0, "GET / HTTP/1.1\r\n\r\n"))
	}
	cb, sb := capture(t, ProtocolPortForward, serverSide, clientSide)
	var col collector
	d := NewWebSocket(ProtocolPortForward, col.emit, WithStream("pf-1"))
	n := len(frameAt(sb, 2))
	d.ServerBytes(sb[:n])
	d.ClientBytes(cb)
	d.ServerBytes(sb[n:])
	d.Close()
	want := []string{"pf-1:8080 stdin GET / HTTP/1.1\r\n\r\n", "pf-1:8080 stdout HTTP/1.1 200 OK\r\n\r\n"}
	if got := col.transcript(); !equalLines(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

// TestWebSocketBoundedMemory feeds a frame claiming an enormous length:
// the decoder must emit bounded chunks and never buffer the whole frame.
func TestWebSocketBoundedMemory(t *testing.T) {
	var col collector
	d := NewWebSocket(ProtocolChannelV4, col.emit)
	hdr := []byte{0x82, 127, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, chStdout}
	d.ServerBytes(hdr)
	chunk := bytes.Repeat([]byte("x"), 1<<16)
	for range 64 {
		d.ServerBytes(chunk)
	}
	total := 0
	for _, e := range col.evs {
		if e.Data.Size > MaxChunk {
			t.Fatalf("event of %d bytes", e.Data.Size)
		}
		total += int(e.Data.Size)
	}
	if total < 63<<16 {
		t.Fatalf("emitted %d bytes, want about %d", total, 64<<16)
	}
	if c := cap(d.server.buf); c > 2*MaxChunk {
		t.Fatalf("buffer grew to %d", c)
	}
}

func deadline() time.Time { return time.Now().Add(10 * time.Second) }
