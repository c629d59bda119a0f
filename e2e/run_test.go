package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/runner"
	"github.com/chaperone-dev/chaperone/pkg/sandbox"
)

// upstream is a real HTTP server and a line echo server on one address of
// the test's own sandbox.
type upstream struct {
	http, echo netip.AddrPort
}

func startUpstream(t *testing.T, ip netip.Addr) upstream {
	t.Helper()
	hl, err := net.Listen("tcp", netip.AddrPortFrom(ip, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Set-Cookie", "session=cookie-secret-123")
		fmt.Fprintf(w, "hello %s", r.URL.Query().Get("name"))
	})
	mux.HandleFunc("POST /items", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(b)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(hl) }()
	t.Cleanup(func() { _ = srv.Close() })

	el, err := net.Listen("tcp", netip.AddrPortFrom(ip, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := el.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				s := bufio.NewScanner(c)
				for s.Scan() {
					fmt.Fprintf(c, "echo: %s\n", s.Text())
				}
			}()
		}
	}()
	t.Cleanup(func() { _ = el.Close() })
	return upstream{
		http: netip.MustParseAddrPort(hl.Addr().String()),
		echo: netip.MustParseAddrPort(el.Addr().String()),
	}
}

func newSandbox(t *testing.T) *sandbox.Sandbox {
	t.Helper()
	sb, err := sandbox.New(t.Context(), sandbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sb.Close() })
	return sb
}

// TestRunRecordsHTTPAndTCP drives real curl and a raw TCP client through the
// real sidecar in a fresh network namespace and checks what the server
// stored.
func TestRunRecordsHTTPAndTCP(t *testing.T) {
	srv, cl := startServer(t)
	sb := newSandbox(t)
	up := startUpstream(t, sb.HostIP())

	script := `set -eu
curl -sS --fail "http://$UP/hello?name=agent" -H "Authorization: Bearer tok-secret-1" -H "Cookie: c=cookie-secret-2"
curl -sS --fail -X POST -H 'Content-Type: application/json' -d '{"name":"widget"}' "http://$UP/items"
exec 3<>"/dev/tcp/${ECHO%:*}/${ECHO##*:}"
echo ping >&3
read -r line <&3
echo "$line"
`
	var out, sidecarLog bytes.Buffer
	res, err := runner.Run(t.Context(), runner.Options{
		Command:     []string{"/bin/bash", "-c", script},
		Env:         []string{"UP=" + up.http.String(), "ECHO=" + up.echo.String()},
		NATSURL:     srv.Addrs.NATS,
		Token:       srv.WorkloadToken,
		SidecarPath: bin("chaperone-sidecar"),
		User:        "e2e-user",
		Sandbox:     sb,
		Stdout:      &out,
		Stderr:      &out,
		SidecarLog:  &sidecarLog,
	})
	if err != nil {
		t.Fatalf("run: %v\noutput:\n%s\nsidecar:\n%s", err, out.String(), sidecarLog.String())
	}
	if res.ExitCode != 0 {
		t.Fatalf("script exited %d:\n%s\nsidecar:\n%s", res.ExitCode, out.String(), sidecarLog.String())
	}
	for _, want := range []string{"hello agent", `{"name":"widget"}`, "echo: ping"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("client output lacks %q:\n%s", want, out.String())
		}
	}

	evs := waitEnded(t, cl, res.Session)
	verifyChain(t, cl, res.Session)
	var reqs []*event.Event
	var resps []*event.HTTPResponse
	var tcpClose *event.Event
	conns := map[string]*event.Destination{}
	for _, e := range evs {
		raw, _ := event.Encode(e)
		for _, secret := range []string{"tok-secret-1", "cookie-secret-2", "cookie-secret-123"} {
			if bytes.Contains(raw, []byte(secret)) {
				t.Errorf("event %s contains %q: %s", e.ID, secret, raw)
			}
		}
		switch e.Kind {
		case event.KindHTTPRequest:
			reqs = append(reqs, e)
		case event.KindHTTPResponse:
			resps = append(resps, e.HTTPResponse)
		case event.KindConnOpen:
			conns[e.Conn] = e.Dest
		case event.KindConnClose:
			if e.Dest != nil && e.Dest.Addr == up.echo.String() {
				tcpClose = e
			}
		}
	}
	if len(reqs) != 2 || len(resps) != 2 {
		dumpEvents(t, evs)
		t.Fatalf("got %d requests and %d responses, want 2 and 2", len(reqs), len(resps))
	}
	get, post := reqs[0], reqs[1]
	if get.Dest == nil || get.Dest.Addr != up.http.String() {
		t.Errorf("GET recorded destination %+v, want %s", get.Dest, up.http)
	}
	if get.HTTPRequest.Method != "GET" || !strings.Contains(get.HTTPRequest.URL, "/hello?name=agent") {
		t.Errorf("GET recorded as %s %s", get.HTTPRequest.Method, get.HTTPRequest.URL)
	}
	for _, h := range []string{"Authorization", "Cookie"} {
		if v := get.HTTPRequest.Headers[h]; len(v) != 1 || v[0] != "[REDACTED]" {
			t.Errorf("%s recorded as %q, want [REDACTED]", h, v)
		}
	}
	if post.HTTPRequest.Method != "POST" || post.HTTPRequest.Body == nil || post.HTTPRequest.Body.Text != `{"name":"widget"}` {
		t.Errorf("POST recorded as %+v", post.HTTPRequest)
	}
	if resps[0].Status != 200 || resps[1].Status != 201 {
		t.Errorf("statuses %d, %d; want 200, 201", resps[0].Status, resps[1].Status)
	}
	if v := resps[0].Headers["Set-Cookie"]; len(v) != 1 || v[0] != "[REDACTED]" {
		t.Errorf("Set-Cookie recorded as %q", v)
	}
	if tcpClose == nil {
		dumpEvents(t, evs)
		t.Fatalf("no conn.close for the raw TCP connection to %s", up.echo)
	}
	if cc := tcpClose.ConnClose; cc.BytesUp != int64(len("ping\n")) || cc.BytesDown != int64(len("echo: ping\n")) {
		t.Errorf("raw TCP bytes up/down = %d/%d, want 5/11", cc.BytesUp, cc.BytesDown)
	}
	if d := conns[tcpClose.Conn]; d == nil || d.Protocol != "tcp" {
		t.Errorf("raw TCP connection opened as %+v, want protocol tcp", d)
	}
	first, last := evs[0], evs[len(evs)-1]
	if first.Kind != event.KindSessionStart || first.Identity == nil || first.Identity.User != "e2e-user" {
		t.Errorf("first event %s identity %+v, want session.start by e2e-user", first.Kind, first.Identity)
	}
	if last.Kind != event.KindSessionEnd {
		t.Errorf("last event is %s, want session.end", last.Kind)
	}
}

// TestChaperonectlRun runs the real CLI: it prints the session on stderr,
// passes the command's exit status through, and the session is stored.
func TestChaperonectlRun(t *testing.T) {
	srv, cl := startServer(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin("chaperonectl"), "--server", srv.Addrs.HTTP, "run", "--", "/bin/sh", "-c", "echo out-line; exit 3")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("chaperonectl run: %v, want exit status 3\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "out-line") {
		t.Errorf("stdout lacks the command's output:\n%s", stdout.String())
	}
	m := regexp.MustCompile(`(?m)^session: ([A-Za-z0-9_-]+)$`).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("stderr has no 'session: <id>' line:\n%s", stderr.String())
	}
	evs := waitEnded(t, cl, m[1])
	if evs[0].Kind != event.KindSessionStart || evs[0].SessionStart.Origin != "run" {
		t.Errorf("first event %+v, want session.start of origin run", evs[0])
	}
	end := evs[len(evs)-1]
	if end.Kind != event.KindSessionEnd || end.SessionEnd.ExitCode == nil || *end.SessionEnd.ExitCode != 3 {
		dumpEvents(t, evs)
		t.Errorf("last event does not record exit status 3")
	}
}
