package streams

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/util/exec"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"
)

// These tests run kubectl's own client (client-go remotecommand, over SPDY
// and over WebSocket) against a small stand-in for the API server's exec
// endpoint, through a loopback proxy that records the bytes both ways in
// the order they passed. The recording is then fed to a Decoder as the
// sidecar would feed it.

const exitStatus3 = `{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}`

type chunk struct {
	fromClient bool
	b          []byte
}

// tapProxy forwards one connection to backend and logs its bytes.
type tapProxy struct {
	url string
	mu  sync.Mutex
	log []chunk
	wg  sync.WaitGroup
}

func newTapProxy(t *testing.T, backend string) *tapProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	p := &tapProxy{url: "http://" + ln.Addr().String()}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		u, err := net.Dial("tcp", backend)
		if err != nil {
			t.Errorf("dial backend: %v", err)
			return
		}
		defer u.Close()
		var inner sync.WaitGroup
		inner.Add(2)
		go func() { defer inner.Done(); p.pipe(u, c, true) }()
		go func() { defer inner.Done(); p.pipe(c, u, false) }()
		inner.Wait()
	}()
	return p
}

func (p *tapProxy) pipe(dst, src net.Conn, fromClient bool) {
	buf := make([]byte, 4096)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			p.log = append(p.log, chunk{fromClient, bytes.Clone(buf[:n])})
			p.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
			return
		}
	}
}

// replay feeds the recorded bytes after each direction's HTTP head to d.
func (p *tapProxy) replay(t *testing.T, d *Decoder) {
	t.Helper()
	p.wg.Wait()
	skip := map[bool]int{}
	for _, dir := range []bool{true, false} {
		var all []byte
		for _, c := range p.log {
			if c.fromClient == dir {
				all = append(all, c.b...)
			}
		}
		i := bytes.Index(all, []byte("\r\n\r\n"))
		if i < 0 {
			t.Fatalf("no HTTP head (client %v)", dir)
		}
		if !dir && !bytes.Contains(all[:i], []byte(" 101 ")) {
			t.Fatalf("not upgraded: %q", all[:i])
		}
		skip[dir] = i + 4
	}
	for _, c := range p.log {
		b := c.b
		n := min(skip[c.fromClient], len(b))
		skip[c.fromClient] -= n
		b = b[n:]
		if c.fromClient {
			d.ClientBytes(b)
		} else {
			d.ServerBytes(b)
		}
	}
	d.Close()
}

// sizes is a TerminalSizeQueue with one size.
type sizes struct{ sent bool }

func (s *sizes) Next() *remotecommand.TerminalSize {
	if s.sent {
		return nil
	}
	s.sent = true
	return &remotecommand.TerminalSize{Width: 132, Height: 43}
}

func runKubectl(t *testing.T, newExec func(u *url.URL) (remotecommand.Executor, error)) string {
	t.Helper()
	u, _ := url.Parse("/api/v1/namespaces/default/pods/agent/exec?command=sh&stdin=true&stdout=true&tty=true")
	ex, err := newExec(u)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err = ex.StreamWithContext(t.Context(), remotecommand.StreamOptions{
		Stdin: strings.NewReader("echo hi\r"), Stdout: &out, Tty: true, TerminalSizeQueue: &sizes{},
	})
	var ce exec.CodeExitError
	if !errors.As(err, &ce) || ce.Code != 3 {
		t.Fatalf("exec: %v, want exit code 3", err)
	}
	return out.String()
}

func TestKubectlSPDY(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := httpstream.Handshake(r, w, []string{"v4.channel.k8s.io"}); err != nil {
			t.Errorf("handshake: %v", err)
			return
		}
		got := make(chan httpstream.Stream, 8)
		conn := spdy.NewResponseUpgrader().UpgradeResponse(w, r, func(s httpstream.Stream, _ <-chan struct{}) error {
			got <- s
			return nil
		})
		if conn == nil {
			return
		}
		defer conn.Close()
		streams := map[string]httpstream.Stream{}
		for len(streams) < 4 { // error, stdin, stdout, resize (tty)
			s := <-got
			streams[s.Headers().Get("streamType")] = s
		}
		// The terminal size arrives on its own stream, whenever the client
		// gets to it: wait for it so the recording always holds it.
		resized := make(chan struct{})
		go func() {
			buf := make([]byte, 256)
			if n, _ := streams["resize"].Read(buf); n > 0 {
				close(resized)
			}
			_, _ = io.Copy(io.Discard, streams["resize"])
		}()
		_, _ = streams["stdout"].Write([]byte("$ "))
		in, _ := io.ReadAll(streams["stdin"])
		_, _ = streams["stdout"].Write(append(in, "\nhi\r\n"...))
		select {
		case <-resized:
		case <-time.After(10 * time.Second):
		}
		_, _ = streams["error"].Write([]byte(exitStatus3))
		streams["error"].Close()
		streams["stdout"].Close()
	}))
	t.Cleanup(srv.Close)
	p := newTapProxy(t, srv.Listener.Addr().String())
	out := runKubectl(t, func(u *url.URL) (remotecommand.Executor, error) {
		return remotecommand.NewSPDYExecutor(&rest.Config{Host: p.url}, "POST", mustURL(p.url, u))
	})
	if out != "$ echo hi\r\nhi\r\n" {
		t.Errorf("kubectl printed %q", out)
	}
	var col collector
	p.replay(t, NewSPDY(col.emit, WithStream("exec-1")))
	checkTranscript(t, col.transcript())
}

func TestKubectlWebSocket(t *testing.T) {
	up := websocket.Upgrader{Subprotocols: []string{ProtocolChannelV5}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			t.Errorf("upgrade: %v", err)
			return
		}
		defer c.Close()
		_ = c.WriteMessage(websocket.BinaryMessage, msg(chStdout, "$ "))
		var in []byte
		for {
			_, m, err := c.ReadMessage()
			if err != nil {
				t.Errorf("server read: %v", err)
				return
			}
			if len(m) > 0 && m[0] == chStdin {
				in = append(in, m[1:]...)
			}
			if len(m) == 2 && m[0] == chClose && m[1] == chStdin {
				break
			}
		}
		_ = c.WriteMessage(websocket.BinaryMessage, msg(chStdout, string(in)+"\nhi\r\n"))
		_ = c.WriteMessage(websocket.BinaryMessage, msg(chError, exitStatus3))
		_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	}))
	t.Cleanup(srv.Close)
	p := newTapProxy(t, srv.Listener.Addr().String())
	out := runKubectl(t, func(u *url.URL) (remotecommand.Executor, error) {
		return remotecommand.NewWebSocketExecutor(&rest.Config{Host: p.url}, "GET", mustURL(p.url, u).String())
	})
	if out != "$ echo hi\r\nhi\r\n" {
		t.Errorf("kubectl printed %q", out)
	}
	var col collector
	p.replay(t, NewWebSocket(ProtocolChannelV5, col.emit, WithStream("exec-1")))
	checkTranscript(t, col.transcript())
}

func mustURL(base string, path *url.URL) *url.URL {
	b, _ := url.Parse(base)
	return b.ResolveReference(path)
}

// checkTranscript compares per channel, since kubectl sends resize and
// stdin concurrently with the server's first output.
func checkTranscript(t *testing.T, got []string) {
	t.Helper()
	by := map[string]string{}
	for _, l := range got {
		k, v, _ := strings.Cut(strings.TrimPrefix(l, "exec-1 "), " ")
		by[k] += v
	}
	want := map[string]string{"stdout": "$ echo hi\r\nhi\r\n", "stdin": "echo hi\r", "resize": "132x43", "exit": "3"}
	for k, v := range want {
		if by[k] != v {
			t.Errorf("%s: %q, want %q (transcript %q)", k, by[k], v, got)
		}
	}
	if len(by) != len(want) {
		t.Errorf("transcript %q has extra channels", got)
	}
}
