package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	exitcode "k8s.io/client-go/util/exec"
	criexec "k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/sidecar/certs"
)

// shellExecutor runs the command as a real process, the way a container
// runtime would, and reports its exit status in the form the streaming
// server turns into the error channel's status.
type shellExecutor struct{}

func (shellExecutor) ExecInContainer(ctx context.Context, _, _, _ string, cmd []string, in io.Reader, out, errw io.WriteCloser, _ bool, _ <-chan criexec.TerminalSize, _ time.Duration) error {
	c := exec.CommandContext(ctx, cmd[0], cmd[1:]...) //nolint:gosec // the test's own command
	c.Stdout, c.Stderr = out, errw
	// Copy stdin ourselves: Wait would wait for a stdin the client may
	// never close (WebSocket v4 has no way to close it).
	stdin, err := c.StdinPipe()
	if err != nil {
		return err
	}
	if err := c.Start(); err != nil {
		return err
	}
	go func() {
		_, _ = io.Copy(stdin, in)
		_ = stdin.Close()
	}()
	err = c.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return utilexec.CodeExitError{Err: err, Code: ee.ExitCode()}
	}
	return err
}

// execAPI stands in for the API server's exec endpoint with the
// kubelet's own streaming server (k8s.io/cri-streaming), which speaks
// SPDY/3.1 and the WebSocket channel protocols.
func execAPI(t *testing.T, tlsCert *tls.Certificate) *httptest.Server {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/exec") {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Origin") == "" {
			// The streaming server's WebSocket handshake wants an Origin;
			// client-go sends none (the API server adds its own).
			r.Header.Set("Origin", "http://"+r.Host)
		}
		opts, err := criexec.NewOptions(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		criexec.ServeExec(w, r, shellExecutor{}, "p", "", "c", r.URL.Query()["command"], opts,
			time.Minute, 30*time.Second, criexec.SupportedStreamingProtocols)
	})
	up := httptest.NewUnstartedServer(h)
	up.Config.ErrorLog = log.New(io.Discard, "", 0)
	if tlsCert != nil {
		up.TLS = &tls.Config{Certificates: []tls.Certificate{*tlsCert}}
		up.StartTLS()
	} else {
		up.Start()
	}
	t.Cleanup(up.Close)
	return up
}

// The script reads a line, echoes it on stdout, writes to stderr and exits
// 3: every channel and a non-zero exit status.
const execScript = `read x; echo "got $x"; echo oops >&2; exit 3`

func execURL(base string) string {
	q := url.Values{"command": {"/bin/sh", "-c", execScript}}
	for _, k := range []string{"input", "output", "error"} {
		q.Set(k, "1")
	}
	return base + "/api/v1/namespaces/default/pods/p/exec?" + q.Encode()
}

// TestExecStreamsRecorded runs client-go's remotecommand executors (kubectl's
// own code, WebSocket and SPDY) through the proxy, in plaintext and TLS
// intercepted, against the kubelet's streaming server running a real
// shell, and checks the decoded stdin, stdout, stderr and exit events.
func TestExecStreamsRecorded(t *testing.T) {
	upCA, err := certs.New(certs.Options{Session: "upstream-ca"})
	if err != nil {
		t.Fatal(err)
	}
	upLeaf, err := upCA.Leaf(t.Context(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	sidecarCA, err := certs.New(certs.Options{Session: "s"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		tls       bool
		websocket bool
	}{
		{"plain-websocket", false, true},
		{"plain-spdy", false, false},
		{"tls-websocket", true, true},
		{"tls-spdy", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var leaf *tls.Certificate
			if tc.tls {
				leaf = upLeaf
			}
			up := execAPI(t, leaf)
			rec := newMemRecorder()
			_, addr := startProxy(t, rec, up.Listener.Addr().String(), func(o *Options) {
				if tc.tls {
					o.TLS = &TLSOptions{Minter: sidecarCA, RootCAs: poolOf(upCA.Certificate())}
				}
			})
			cfg := &rest.Config{Host: "http://" + addr}
			if tc.tls {
				cfg.Host = "https://" + addr
				cfg.CAData = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: sidecarCA.Certificate().Raw})
			}
			u := execURL(cfg.Host)
			var ex remotecommand.Executor
			if tc.websocket {
				// The kubelet's streaming server speaks v4 over WebSocket;
				// v5 (kubectl's default) is what the API server speaks, and
				// the e2e test covers it.
				ex, err = remotecommand.NewWebSocketExecutorForProtocols(cfg, "GET", u, "v4.channel.k8s.io")
			} else {
				ex, err = remotecommand.NewSPDYExecutor(cfg, "POST", mustURL(t, u))
			}
			if err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			err := ex.StreamWithContext(t.Context(), remotecommand.StreamOptions{
				Stdin: strings.NewReader("hello\n"), Stdout: &stdout, Stderr: &stderr,
			})
			var ce exitcode.CodeExitError
			if !errors.As(err, &ce) || ce.Code != 3 {
				t.Fatalf("exec: %v, want exit code 3", err)
			}
			if stdout.String() != "got hello\n" || stderr.String() != "oops\n" {
				t.Fatalf("stdout %q stderr %q", stdout.String(), stderr.String())
			}
			evs := rec.closes(t, 1)
			got := streamTranscript(evs)
			t.Logf("transcript %q", got)
			want := []string{"stdin hello\n", "stdout got hello\n", "stderr oops\n", "exit 3"}
			for _, w := range want {
				if !strings.Contains(strings.Join(got, "|"), w) {
					t.Errorf("transcript lacks %q: %q", w, got)
				}
			}
			checkStreamOrder(t, evs)
		})
	}
}

// streamTranscript merges consecutive stream.data events of one channel
// into lines "channel data" and the exit status into "exit N".
func streamTranscript(evs []*event.Event) []string {
	var out []string
	last := ""
	for _, e := range ofKind(evs, event.KindStreamData) {
		d := e.StreamData
		switch d.Channel {
		case "exit":
			s := "exit"
			if d.Exit != nil {
				s += " " + string(rune('0'+*d.Exit))
			}
			out = append(out, s)
			last = ""
		case "resize":
			last = ""
		default:
			text := ""
			if d.Data != nil {
				text = d.Data.Text + string(d.Data.B64)
			}
			if d.Channel == last {
				out[len(out)-1] += text
				continue
			}
			out = append(out, d.Channel+" "+text)
			last = d.Channel
		}
	}
	return out
}

// checkStreamOrder wants every stream.data event after the 101 response
// that opened its stream, all in one stream named for the exec request.
func checkStreamOrder(t *testing.T, evs []*event.Event) {
	t.Helper()
	switched, name := false, ""
	for _, e := range evs {
		switch e.Kind {
		case event.KindHTTPResponse:
			if e.HTTPResponse.Status == http.StatusSwitchingProtocols {
				switched = true
				name = StreamName("exec", e.Conn, e.HTTPResponse.Stream)
			}
		case event.KindStreamData:
			if !switched {
				t.Errorf("stream.data %+v before the 101 response", e.StreamData)
			}
			if e.StreamData.Stream != name {
				t.Errorf("stream %q, want %q", e.StreamData.Stream, name)
			}
		}
	}
	if !switched {
		t.Error("no 101 response recorded")
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
