package e2e

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/localserver"
	"github.com/chaperone-dev/chaperone/pkg/runner"
	"github.com/chaperone-dev/chaperone/pkg/sandbox"
	"github.com/chaperone-dev/chaperone/sidecar/certs"
)

// tlsUpstream is an HTTPS server on the sandbox's host IP with a test CA
// of its own: it shows a certificate for "pinned.test" to that SNI and one
// for "upstream.test" to every other.
type tlsUpstream struct {
	addr   netip.AddrPort
	caFile string // the test CA, PEM
	// conns counts the connections the upstream accepted.
	conns *atomic.Int32
}

func startTLSUpstream(t *testing.T, ip netip.Addr) tlsUpstream {
	t.Helper()
	ca, err := certs.New(certs.Options{Session: "e2e-upstream"})
	if err != nil {
		t.Fatal(err)
	}
	leaves := map[string]*tls.Certificate{}
	for _, n := range []string{"upstream.test", "pinned.test"} {
		if leaves[n], err = ca.Leaf(t.Context(), n); err != nil {
			t.Fatal(err)
		}
	}
	caFile := filepath.Join(t.TempDir(), "upstream-ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", netip.AddrPortFrom(ip, 0).String(), &tls.Config{
		GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c := leaves[h.ServerName]; c != nil {
				return c, nil
			}
			return leaves["upstream.test"], nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s over %s", r.URL.Query().Get("name"), r.Proto)
	})
	conns := &atomic.Int32{}
	srv := &http.Server{
		Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(io.Discard, "", 0),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		},
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return tlsUpstream{addr: netip.MustParseAddrPort(ln.Addr().String()), caFile: caFile, conns: conns}
}

// runTLS runs script behind the real sidecar in sb and returns its output
// and the session id.
func runTLS(t *testing.T, srv *localserver.Server, sb *sandbox.Sandbox, up tlsUpstream, extraCA []string, script string, sidecarArgs ...string) (output, session string) {
	t.Helper()
	var out, sidecarLog bytes.Buffer
	res, err := runner.Run(t.Context(), runner.Options{
		Command: []string{"/bin/bash", "-c", script},
		Env: []string{
			"IP=" + up.addr.Addr().String(), "PORT=" + fmt.Sprint(up.addr.Port()), "UPSTREAM_CA=" + up.caFile,
		},
		ExtraCA:     extraCA,
		SidecarArgs: append([]string{"--no-intercept", "pinned.test"}, sidecarArgs...),
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
	return out.String(), res.Session
}

// TestTLSIntercept drives real curl, trusting only what the runner's CA
// variables name, through the real sidecar to an HTTPS upstream whose CA
// the sidecar gets with --extra-ca; a --no-intercept name still reaches
// the upstream with the client pinning the upstream's CA; a name the
// upstream's certificate does not cover is refused.
func TestTLSIntercept(t *testing.T) {
	srv, cl := startServer(t)
	sb := newSandbox(t)
	up := startTLSUpstream(t, sb.HostIP())
	script := `set -u
test -s "$CURL_CA_BUNDLE" && test -s "$SSL_CERT_FILE" && test -s "$NODE_EXTRA_CA_CERTS" || { echo "no CA env"; exit 9; }
grep -q "Chaperone sidecar CA" "$CURL_CA_BUNDLE" || { echo "bundle lacks the sidecar CA"; exit 8; }
test "$(grep -c BEGIN "$NODE_EXTRA_CA_CERTS")" = 1 || { echo "NODE_EXTRA_CA_CERTS is not the CA alone"; exit 7; }
curl -sS --fail --resolve "upstream.test:$PORT:$IP" "https://upstream.test:$PORT/hello?name=intercepted"; echo " [intercepted rc=$?]"
curl -sS --fail --resolve "pinned.test:$PORT:$IP" --cacert "$UPSTREAM_CA" "https://pinned.test:$PORT/hello?name=pinned"; echo " [pinned rc=$?]"
curl -sS --fail --resolve "wrong.test:$PORT:$IP" "https://wrong.test:$PORT/hello?name=wrong"; echo " [wrong rc=$?]"
exit 0
`
	out, session := runTLS(t, srv, sb, up, []string{up.caFile}, script)
	for _, want := range []string{
		"hello intercepted over HTTP/1.1 [intercepted rc=0]",
		"hello pinned over HTTP/1.1 [pinned rc=0]",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "[wrong rc=0]") {
		t.Errorf("curl reached a host the upstream certificate does not cover:\n%s", out)
	}

	evs := waitEnded(t, cl, session)
	verifyChain(t, cl, session)
	opens := map[string]*event.Event{} // by SNI
	var reqs, resps, pinnedClose []*event.Event
	for _, e := range evs {
		switch e.Kind {
		case event.KindConnOpen:
			if e.ConnOpen.TLS != nil {
				opens[e.ConnOpen.TLS.SNI] = e
			}
		case event.KindHTTPRequest:
			reqs = append(reqs, e)
		case event.KindHTTPResponse:
			resps = append(resps, e)
		case event.KindConnClose:
			if e.ConnClose.TLS != nil && e.ConnClose.TLS.SNI == "pinned.test" {
				pinnedClose = append(pinnedClose, e)
			}
		}
	}
	if len(reqs) != 1 || len(resps) != 1 {
		dumpEvents(t, evs)
		t.Fatalf("%d requests and %d responses recorded, want only the intercepted exchange", len(reqs), len(resps))
	}
	req, resp := reqs[0], resps[0]
	wantHost := fmt.Sprintf("upstream.test:%d", up.addr.Port())
	if r := req.HTTPRequest; r.Method != "GET" || r.URL != "/hello?name=intercepted" || r.Host != wantHost {
		t.Errorf("request recorded as %s %s host %q", r.Method, r.URL, r.Host)
	}
	if req.Dest == nil || req.Dest.Addr != up.addr.String() || req.Dest.Protocol != "https" {
		t.Errorf("request destination %+v", req.Dest)
	}
	if r := resp.HTTPResponse; r.Status != 200 || r.Body == nil || r.Body.Text != "hello intercepted over HTTP/1.1" {
		t.Errorf("response recorded as %d %+v", r.Status, r.Body)
	}
	if o := opens["upstream.test"]; o == nil || o.ConnOpen.Refused != "" || !o.ConnOpen.TLS.Intercepted ||
		o.ConnOpen.TLS.Version == "" || o.ConnOpen.TLS.Cipher == "" || o.Dest.Host != "upstream.test" {
		t.Errorf("intercepted conn.open %+v", o)
	}
	if o := opens["pinned.test"]; o == nil || o.ConnOpen.TLS.Intercepted || o.Dest.Protocol != "tls" {
		t.Errorf("pass-through conn.open %+v", o)
	}
	if len(pinnedClose) != 1 || pinnedClose[0].ConnClose.BytesDown == 0 || pinnedClose[0].ConnClose.TLS.Intercepted {
		t.Errorf("pass-through conn.close %+v", pinnedClose)
	}
	if o := opens["wrong.test"]; o == nil || !strings.Contains(o.ConnOpen.Refused, "not wrong.test") {
		dumpEvents(t, evs)
		t.Errorf("mismatched name not refused: %+v", o)
	}
}

// TestTLSUntrustedUpstreamRefused omits --extra-ca: the upstream's CA is
// unknown to the sidecar, which refuses the connection and records why.
func TestTLSUntrustedUpstreamRefused(t *testing.T) {
	srv, cl := startServer(t)
	sb := newSandbox(t)
	up := startTLSUpstream(t, sb.HostIP())
	script := `curl -sS --fail --resolve "upstream.test:$PORT:$IP" "https://upstream.test:$PORT/hello?name=x"; echo " [rc=$?]"`
	out, session := runTLS(t, srv, sb, up, nil, script)
	if strings.Contains(out, "hello x") || strings.Contains(out, "[rc=0]") {
		t.Fatalf("curl reached an upstream the sidecar cannot verify:\n%s", out)
	}
	evs := waitEnded(t, cl, session)
	var refused *event.Event
	for _, e := range evs {
		if e.Kind == event.KindHTTPRequest {
			t.Errorf("a request was relayed: %+v", e.HTTPRequest)
		}
		if e.Kind == event.KindConnOpen && e.Dest != nil && e.Dest.Addr == up.addr.String() {
			refused = e
		}
	}
	if refused == nil || !strings.Contains(refused.ConnOpen.Refused, "unknown authority") || refused.ConnOpen.TLS == nil || refused.ConnOpen.TLS.SNI != "upstream.test" {
		dumpEvents(t, evs)
		t.Fatalf("refusal not recorded: %+v", refused)
	}
}
