package http2

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// clientBytes builds an h2c client's opening: preface, settings and one
// request with a body.
func clientBytes(method, path string, body []byte) []byte {
	var buf bytes.Buffer
	buf.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(&buf, nil)
	_ = fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", method}, {":scheme", "http"}, {":authority", "example.test"}, {":path", path}, {"content-type", "application/grpc"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true, EndStream: len(body) == 0})
	if len(body) > 0 {
		_ = fr.WriteData(1, true, body)
	}
	return buf.Bytes()
}

// FuzzServe feeds arbitrary bytes as the client side of an h2c connection
// against a trivial upstream: Serve must neither panic nor hang.
func FuzzServe(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte(http2.ClientPreface))
	f.Add(clientBytes("GET", "/", nil))
	f.Add(clientBytes("POST", "/pkg.Svc/Call", []byte{0, 0, 0, 0, 3, 'a', 'b', 'c'}))
	f.Add(clientBytes("GET", "/watch?watch=true", nil))
	f.Add(append(clientBytes("GET", "/", nil), 0, 0, 4, 8, 0, 0, 0, 0, 0)) // bad window update
	f.Fuzz(func(t *testing.T, data []byte) { serveFuzzInput(t, data) })
}

var fuzzUpstream = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	_, _ = io.WriteString(w, "ok")
})

// serveFuzzInput serves data as everything a client sends; what the
// recorder answers is discarded. An input the HTTP/2 server rejects with
// a connection error takes about a second (x/net's GOAWAY grace).
func serveFuzzInput(t *testing.T, data []byte) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	upA, upB := net.Pipe()
	defer upB.Close()
	go (&http2.Server{}).ServeConn(upB, &http2.ServeConnOpts{Context: ctx, Handler: fuzzUpstream})
	client := &fuzzConn{Reader: bytes.NewReader(data)}
	New(Options{FlushInterval: 10 * time.Millisecond}).Serve(ctx, client, upA, "http", "example.test", newSink())
	if ctx.Err() != nil {
		t.Fatalf("Serve did not end within its bound on %q", data)
	}
}

// fuzzConn is a client that sends its bytes, then EOF, and ignores what it
// is sent.
type fuzzConn struct {
	*bytes.Reader
	net.Conn // nil: the methods below are all that is used
}

func (c *fuzzConn) Read(p []byte) (int, error)       { return c.Reader.Read(p) }
func (c *fuzzConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *fuzzConn) Close() error                     { return nil }
func (c *fuzzConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *fuzzConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *fuzzConn) SetDeadline(time.Time) error      { return nil }
func (c *fuzzConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fuzzConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzGRPCFrames checks that the gRPC framing follower counts the same
// messages however a body is split.
func FuzzGRPCFrames(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 3, 'a', 'b', 'c', 0, 0, 0, 0, 0}, 4)
	f.Add([]byte{1, 255, 255, 255, 255}, 2)
	f.Fuzz(func(t *testing.T, data []byte, split int) {
		var whole, parts grpcFrames
		whole.feed(data)
		if split < 0 {
			split = -split
		}
		split %= len(data) + 1
		parts.feed(data[:split])
		parts.feed(data[split:])
		if whole.count != parts.count || whole.left != parts.left || whole.nhdr != parts.nhdr || len(whole.sizes) > maxGRPCSizes {
			t.Fatalf("split %d: %+v vs %+v", split, whole, parts)
		}
	})
}
