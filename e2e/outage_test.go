package e2e

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/client"
	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/localserver"
	"github.com/chaperone-dev/chaperone/pkg/runner"
)

var outage = flag.Duration("outage", 30*time.Second, "how long the server stays down in TestServerOutageLosesNothing")

// freePorts returns n loopback ports that were free a moment ago, so a
// restarted server can come back on the same addresses.
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	for _, ln := range lns {
		_ = ln.Close()
	}
	return addrs
}

// fixedServer runs chaperone-server on fixed addresses and a data dir that
// survive a restart.
type fixedServer struct {
	t       *testing.T
	dir     string
	args    []string
	srv     *localserver.Server
	cl      *client.Client
	natsURL string
}

func startFixedServer(t *testing.T) *fixedServer {
	t.Helper()
	ports := freePorts(t, 2)
	f := &fixedServer{t: t, dir: t.TempDir(), args: []string{"--http-addr", ports[0], "--nats-addr", ports[1]}}
	f.start()
	t.Cleanup(func() { f.stop() })
	return f
}

func (f *fixedServer) start() {
	f.t.Helper()
	srv, err := localserver.Start(f.t.Context(), localserver.Options{Binary: bin("chaperone-server"), DataDir: f.dir, Args: f.args})
	if err != nil {
		log, _ := os.ReadFile(f.dir + "/server.log")
		f.t.Fatalf("%v\n%s", err, log)
	}
	f.srv, f.natsURL = srv, srv.Addrs.NATS
	if f.cl, err = client.New(srv.Addrs.HTTP); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixedServer) stop() {
	if f.srv != nil {
		if err := f.srv.Stop(); err != nil {
			f.t.Errorf("stop server: %v", err)
		}
		f.srv = nil
	}
}

// TestServerOutageLosesNothing keeps an agent making requests while the
// server (and its embedded NATS) is down for --outage (30 s by default):
// the sidecar spools, replays on reconnect, and every request is stored
// exactly once with an intact chain.
func TestServerOutageLosesNothing(t *testing.T) {
	down := *outage
	if testing.Short() {
		down = 3 * time.Second
	}
	srv := startFixedServer(t)
	sb := newSandbox(t)
	up := startUpstream(t, sb.HostIP())

	const requests = 120
	// Spread the requests over the outage and a little on both sides of it.
	pause := (down + 6*time.Second).Seconds() / requests
	script := fmt.Sprintf(`set -eu
i=0
while [ $i -lt %d ]; do
  curl -sS --fail -o /dev/null "http://$UP/hello?name=r$i"
  i=$((i+1))
  sleep %.3f
done
`, requests, pause)

	type result struct {
		res runner.Result
		err error
	}
	done := make(chan result, 1)
	var out, sidecarLog bytes.Buffer
	started := make(chan struct{})
	go func() {
		res, err := runner.Run(context.WithoutCancel(t.Context()), runner.Options{
			Command:     []string{"/bin/sh", "-c", script},
			Env:         []string{"UP=" + up.http.String()},
			NATSURL:     srv.natsURL,
			Token:       srv.cl.WorkloadToken,
			SidecarPath: bin("chaperone-sidecar"),
			User:        "outage",
			Sandbox:     sb,
			Stdout:      &out,
			Stderr:      &out,
			SidecarLog:  &sidecarLog,
			// The spool must outlive the outage on shutdown too.
			DrainTimeout: 2 * time.Minute,
			SidecarArgs:  []string{"--flush-timeout", "90s"},
			Started:      func(runner.Started) { close(started) },
		})
		done <- result{res, err}
	}()
	<-started
	time.Sleep(3 * time.Second)
	srv.stop()
	t.Logf("server down for %s", down)
	time.Sleep(down)
	srv.start()
	t.Log("server back")

	r := <-done
	if r.err != nil || r.res.ExitCode != 0 {
		t.Fatalf("run: %v (exit %d)\n%s\nsidecar:\n%s", r.err, r.res.ExitCode, out.String(), sidecarLog.String())
	}
	evs := waitEnded(t, srv.cl, r.res.Session)
	verifyChain(t, srv.cl, r.res.Session)
	seen := map[string]int{}
	ids := map[string]bool{}
	for _, e := range evs {
		if ids[e.ID] {
			t.Errorf("event %s stored twice", e.ID)
		}
		ids[e.ID] = true
		if e.Kind == event.KindHTTPRequest {
			seen[e.HTTPRequest.URL]++
		}
	}
	for i := range requests {
		if n := seen[fmt.Sprintf("/hello?name=r%d", i)]; n != 1 {
			t.Errorf("request r%d stored %d times, want exactly once", i, n)
		}
	}
	if len(seen) != requests {
		t.Errorf("%d distinct requests stored, want %d", len(seen), requests)
	}
}

// TestSpoolFullFailsClosed fills a tiny spool while the server is down: new
// connections are then refused (not relayed unrecorded), and once the server
// is back and the spool drained, connections are accepted again.
func TestSpoolFullFailsClosed(t *testing.T) {
	srv := startFixedServer(t)
	sb := newSandbox(t)
	up := startUpstream(t, sb.HostIP())
	ready := make(chan struct{})
	release := make(chan struct{})
	script := `set -u
# phase 1: fill the spool while the server is away, until the sidecar refuses
ok=0; refused=0
for i in $(seq 1 400); do
  if curl -s --fail -o /dev/null --max-time 5 "http://$UP/hello?name=fill$i"; then ok=$((ok+1)); else refused=1; break; fi
done
echo "filled=$ok refused=$refused"
: > "$FLAG/phase1"
while [ ! -e "$FLAG/phase2" ]; do sleep 0.1; done
# phase 2: the server is back; the spool drains and connections are accepted again
for i in $(seq 1 100); do
  if curl -s --fail -o /dev/null --max-time 5 "http://$UP/hello?name=after"; then echo "accepted again"; exit 0; fi
  sleep 0.2
done
echo "still refused"; exit 1
`
	flagDir := t.TempDir()
	if err := os.Chmod(flagDir, 0o777); err != nil {
		t.Fatal(err)
	}
	var out, sidecarLog bytes.Buffer
	done := make(chan error, 1)
	var res runner.Result
	go func() {
		var err error
		res, err = runner.Run(context.WithoutCancel(t.Context()), runner.Options{
			Command:     []string{"/bin/bash", "-c", script},
			Env:         []string{"UP=" + up.http.String(), "FLAG=" + flagDir},
			NATSURL:     srv.natsURL,
			Token:       srv.cl.WorkloadToken,
			SidecarPath: bin("chaperone-sidecar"),
			Sandbox:     sb,
			Stdout:      &out,
			Stderr:      &out,
			SidecarLog:  &sidecarLog,
			SidecarArgs: []string{"--spool-max-bytes", "65536"},
			Started: func(runner.Started) {
				close(ready)
				<-release
			},
		})
		done <- err
	}()
	<-ready
	srv.stop()
	close(release)
	waitFile(t, flagDir+"/phase1", time.Minute)
	if !strings.Contains(out.String(), "refused=1") {
		t.Fatalf("the sidecar never refused a connection with a full spool:\n%s\nsidecar:\n%s", out.String(), sidecarLog.String())
	}
	srv.start()
	if err := os.WriteFile(flagDir+"/phase2", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil || res.ExitCode != 0 {
		t.Fatalf("run: %v (exit %d)\n%s\nsidecar:\n%s", err, res.ExitCode, out.String(), sidecarLog.String())
	}
	if !strings.Contains(sidecarLog.String(), "recording unavailable") {
		t.Errorf("the sidecar log does not say why it refused:\n%s", sidecarLog.String())
	}
	evs := waitEnded(t, srv.cl, res.Session)
	verifyChain(t, srv.cl, res.Session)
	refused := 0
	for _, e := range evs {
		if e.Kind == event.KindConnOpen && strings.Contains(e.ConnOpen.Refused, "recording unavailable") {
			refused++
		}
	}
	t.Logf("%d events stored, %d refused connections recorded", len(evs), refused)
}

func waitFile(t *testing.T, path string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear within %s", path, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
