package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/chaperone-dev/chaperone/e2e/kube"
	"github.com/chaperone-dev/chaperone/pkg/client"
	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/runner"
)

// execScript is what the agent runs: an interactive exec fed from a pipe
// (over WebSocket v5, kubectl's default, and over SPDY/3.1), an attach fed from a pipe, an exec with a terminal (kubectl gets one from script(1), sized 97x31),
// and a port-forward that curl goes through. Each kubectl talks to the
// real API server through the real sidecar, trusting only its bundle.
const execScript = `set -u
export KUBECONFIG="$WORK/kubeconfig"
kubectl config set-cluster bed --server="https://$API" --certificate-authority="$CURL_CA_BUNDLE" --tls-server-name=kubernetes.default.svc >/dev/null
kubectl config set-credentials agent --token="$TOKEN" >/dev/null
kubectl config set-context bed --cluster=bed --user=agent --namespace=default >/dev/null
kubectl config use-context bed >/dev/null

printf 'world\n' | kubectl exec -i agent-shell -- /bin/sh -c 'echo hi; read x; echo "got $x"; echo warn >&2; exit 3' 2>"$WORK/exec.err"
echo "exec-exit=$?"
cat "$WORK/exec.err"

printf 'legacy\n' | KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false kubectl exec -i agent-shell -- /bin/sh -c 'read y; echo "spdy $y"; exit 5'
echo "spdy-exit=$?"

printf 'echo attached-ok\nexit 0\n' | kubectl attach -i agent-shell -c main
echo "attach-exit=$?"

script -qec "stty cols 97 rows 31; kubectl exec -it agent-shell -- /bin/sh -c 'stty size; echo tty-ok'" /dev/null </dev/null
echo "tty-exit=$?"

kubectl port-forward pod/agent-shell 18080:"$WEBPORT" >"$WORK/pf.log" 2>&1 &
pf=$!
i=0
until curl -sS --fail http://127.0.0.1:18080/forwarded >"$WORK/pf.out" 2>/dev/null; do
	i=$((i+1))
	if [ $i -ge 100 ]; then cat "$WORK/pf.log"; kill $pf; exit 1; fi
	sleep 0.1
done
cat "$WORK/pf.out"; echo
kill $pf; wait $pf 2>/dev/null
echo done
`

// TestKubectlExecRecorded runs the real kubectl exec (piped stdin, and a
// terminal), attach and port-forward in a recorded namespace against the real
// kube-apiserver, which streams to a node served by the kubelet's own
// streaming code running real processes. The kubectl → API server leg
// passes the sidecar (WebSocket v5 and the SPDY-over-WebSocket
// port-forward tunnel, TLS intercepted); the session must hold each
// stream's stdin, stdout, stderr, resize and exit, and the exec stream must
// come back as an asciicast that asciinema replays, the same from the CLI
// and from the server.
func TestKubectlExecRecorded(t *testing.T) {
	cluster := kube.StartTest(t)
	node, err := cluster.StartNode(t.Context(), "exec-node")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := node.RunPod(t.Context(), "default", "agent-shell"); err != nil {
		t.Fatal(err)
	}
	web := forwardTarget(t)
	srv, cl := startServer(t)
	sb := newSandbox(t)
	api := tcpRelay(t, sb.HostIP(), strings.TrimPrefix(cluster.URL(), "https://"))
	caFile := filepath.Join(t.TempDir(), "cluster-ca.crt")
	if err := os.WriteFile(caFile, cluster.CA(), 0o600); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()

	var out, sidecarLog bytes.Buffer
	res, err := runner.Run(t.Context(), runner.Options{
		Command: []string{"/bin/sh", "-c", execScript},
		Env: []string{"WORK=" + work, "API=" + api.String(), "TOKEN=" + cluster.AdminToken(),
			"HOME=" + work, "WEBPORT=" + strconv.Itoa(web)},
		NATSURL:     srv.Addrs.NATS,
		Token:       srv.WorkloadToken,
		SidecarPath: bin("chaperone-sidecar"),
		User:        "exec-e2e",
		Sandbox:     sb,
		ExtraCA:     []string{caFile},
		SidecarArgs: []string{"--kube-api", api.String()},
		Stdout:      &out,
		Stderr:      &out,
		SidecarLog:  &sidecarLog,
	})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("kubectl script: %v (exit %d)\n%s\nsidecar:\n%s", err, res.ExitCode, out.String(), sidecarLog.String())
	}
	for _, want := range []string{"hi\ngot world\n", "warn", "exec-exit=3", "spdy legacy", "spdy-exit=5", "attached-ok", "attach-exit=0", "31 97", "tty-ok", "tty-exit=0", "forwarded-ok /forwarded", "done"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("kubectl output lacks %q:\n%s", want, out.String())
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	evs := waitEnded(t, cl, res.Session)
	verifyChain(t, cl, res.Session)
	streams := map[string]*streamLog{}
	var order []string
	for _, e := range evs {
		raw, _ := event.Encode(e)
		if bytes.Contains(raw, []byte(cluster.AdminToken())) {
			t.Errorf("event %s (%s) contains the bearer token", e.ID, e.Kind)
		}
		if e.Kind != event.KindStreamData {
			continue
		}
		d := e.StreamData
		s := streams[d.Stream]
		if s == nil {
			s = &streamLog{channels: map[string]*bytes.Buffer{}}
			streams[d.Stream] = s
			order = append(order, d.Stream)
		}
		s.add(t, cl, d)
	}
	find := func(prefix, contains string) (string, *streamLog) {
		for _, name := range order {
			if strings.HasPrefix(name, prefix) && strings.Contains(streams[name].text("stdout"), contains) {
				return name, streams[name]
			}
		}
		t.Fatalf("no %s stream whose stdout has %q; streams: %v", prefix, contains, order)
		return "", nil
	}

	// The piped exec: every channel, and the exit status.
	name, s := find("exec-", "got world")
	if got := s.text("stdin"); got != "world\n" {
		t.Errorf("exec stdin %q, want %q", got, "world\n")
	}
	if got := s.text("stdout"); got != "hi\ngot world\n" {
		t.Errorf("exec stdout %q", got)
	}
	if got := s.text("stderr"); got != "warn\n" {
		t.Errorf("exec stderr %q", got)
	}
	if s.exit == nil || *s.exit != 3 {
		t.Errorf("exec exit %v, want 3", s.exit)
	}

	// The terminal exec: the size kubectl sent, and the output.
	_, tty := find("exec-", "tty-ok")
	if !tty.resized(97, 31) {
		t.Errorf("tty stream has no resize 97x31: %v", tty.resizes)
	}
	if !strings.Contains(tty.text("stdout"), "31 97") {
		t.Errorf("tty stdout %q lacks the size", tty.text("stdout"))
	}
	if tty.exit == nil || *tty.exit != 0 {
		t.Errorf("tty exit %v, want 0", tty.exit)
	}

	// The same over SPDY/3.1, kubectl's fallback.
	_, sp := find("exec-", "spdy legacy")
	if got := sp.text("stdin"); got != "legacy\n" {
		t.Errorf("spdy exec stdin %q", got)
	}
	if sp.exit == nil || *sp.exit != 5 {
		t.Errorf("spdy exec exit %v, want 5", sp.exit)
	}

	// The attach: the shell's input and output.
	_, at := find("attach-", "attached-ok")
	if got := at.text("stdin"); got != "echo attached-ok\nexit 0\n" {
		t.Errorf("attach stdin %q", got)
	}
	if at.exit == nil || *at.exit != 0 {
		t.Errorf("attach exit %v, want 0", at.exit)
	}

	// The port-forward: curl's request up, the server's answer down.
	var pf *streamLog
	for _, n := range order {
		if strings.HasPrefix(n, "portforward-") && strings.HasSuffix(n, ":"+strconv.Itoa(web)) {
			pf = streams[n]
		}
	}
	if pf == nil {
		t.Fatalf("no portforward stream for port %d; streams: %v", web, order)
	}
	if !strings.Contains(pf.text("stdin"), "GET /forwarded HTTP/1.1") {
		t.Errorf("port-forward stdin %q lacks curl's request", pf.text("stdin"))
	}
	if !strings.Contains(pf.text("stdout"), "forwarded-ok /forwarded") {
		t.Errorf("port-forward stdout %q lacks the answer", pf.text("stdout"))
	}

	// The exec stream as asciicast, from the CLI and from the server.
	castFile := filepath.Join(t.TempDir(), "exec.cast")
	cmd := exec.CommandContext(t.Context(), bin("chaperonectl"), "--server", srv.Addrs.HTTP,
		"sessions", "export", res.Session, "--format", "asciicast", "--stream", name)
	cast, err := cmd.Output()
	if err != nil {
		t.Fatalf("chaperonectl export: %v", err)
	}
	if err := os.WriteFile(castFile, cast, 0o600); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(srv.Addrs.HTTP + "/api/v1/sessions/" + res.Session + "/streams/" + name + ".cast")
	if err != nil {
		t.Fatal(err)
	}
	served, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(served, cast) {
		t.Errorf("server .cast (%s) differs from the CLI export:\n%s\nvs\n%s", resp.Status, served, cast)
	}
	// asciinema reads its controls from /dev/tty: give it a terminal.
	replay, err := exec.CommandContext(t.Context(), "script", "-qec", "asciinema cat "+castFile, "/dev/null").CombinedOutput()
	if err != nil {
		t.Fatalf("asciinema cat: %v\n%s", err, replay)
	}
	// stdout and stderr are one output in a cast, in the order they were
	// relayed, which between two pipes is up to the scheduler.
	replay = bytes.ReplaceAll(replay, []byte("\r\n"), []byte("\n"))
	for _, want := range []string{"hi\n", "got world\n", "warn\n"} {
		if !bytes.Contains(replay, []byte(want)) {
			t.Errorf("asciinema cat replays %q, want %q in it", replay, want)
		}
	}
	t.Logf("streams %v; cast of %s:\n%s", order, name, cast)
	if t.Failed() {
		dumpEvents(t, evs)
	}
}

// streamLog gathers one stream's recorded events.
type streamLog struct {
	channels map[string]*bytes.Buffer
	resizes  []string
	exit     *int
}

func (s *streamLog) add(t *testing.T, cl *client.Client, d *event.StreamData) {
	t.Helper()
	switch d.Channel {
	case "resize":
		s.resizes = append(s.resizes, fmt.Sprintf("%dx%d", d.Width, d.Height))
	case "exit":
		s.exit = d.Exit
	default:
		b := s.channels[d.Channel]
		if b == nil {
			b = &bytes.Buffer{}
			s.channels[d.Channel] = b
		}
		b.Write(bodyBytes(t, cl, d.Data))
	}
}

func (s *streamLog) text(channel string) string {
	if b := s.channels[channel]; b != nil {
		return b.String()
	}
	return ""
}

func (s *streamLog) resized(w, h int) bool {
	for _, r := range s.resizes {
		if r == fmt.Sprintf("%dx%d", w, h) {
			return true
		}
	}
	return false
}

// forwardTarget serves HTTP on the host's loopback, where the node's
// port-forward connects, and returns its port.
func forwardTarget(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "forwarded-ok "+r.URL.Path)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// bodyBytes returns a recorded body's bytes, fetching a blob by its ref.
func bodyBytes(t *testing.T, cl *client.Client, b *event.Body) []byte {
	t.Helper()
	switch {
	case b == nil:
		return nil
	case b.Ref != "":
		p, err := cl.Blob(t.Context(), b.Ref)
		if err != nil {
			t.Fatalf("blob %s: %v", b.Ref, err)
		}
		return p
	case b.B64 != nil:
		return b.B64
	}
	return []byte(b.Text)
}
