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
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/runner"
	"github.com/chaperone-dev/chaperone/sidecar/certs"
)

// sseGap is the pause between the two server-sent events: longer than
// the recorder's flush interval, so the first event is recorded on its
// own while the stream is open. It is no assertion on timing.
const sseGap = 600 * time.Millisecond

// h2Mux answers /hello with the protocol it was asked over and /events
// with two server-sent events and a pause between them.
func h2Mux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s over %s", r.URL.Query().Get("name"), r.Proto)
	})
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: one\n\n")
		http.NewResponseController(w).Flush()
		select {
		case <-time.After(sseGap):
		case <-r.Context().Done():
			return
		}
		fmt.Fprint(w, "data: two\n\n")
	})
	return mux
}

// startH2Upstreams starts, on the sandbox's host IP, an HTTPS server that
// speaks h2 (certified for "h2.test" by a test CA of its own, whose PEM
// file it returns) and an h2c server (prior knowledge).
func startH2Upstreams(t *testing.T, ip netip.Addr) (tlsAddr, h2cAddr netip.AddrPort, caFile string) {
	t.Helper()
	ca, err := certs.New(certs.Options{Session: "e2e-h2-upstream"})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Leaf(t.Context(), "h2.test")
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(t.TempDir(), "h2-ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	quiet := log.New(io.Discard, "", 0)

	ln, err := net.Listen("tcp", netip.AddrPortFrom(ip, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h2Mux(), ReadHeaderTimeout: 5 * time.Second, ErrorLog: quiet,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{*leaf}}}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })

	ln2, err := net.Listen("tcp", netip.AddrPortFrom(ip, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	srv2 := &http.Server{Handler: h2Mux(), ReadHeaderTimeout: 5 * time.Second, ErrorLog: quiet, Protocols: &p}
	go func() { _ = srv2.Serve(ln2) }()
	t.Cleanup(func() { _ = srv2.Close() })
	return netip.MustParseAddrPort(ln.Addr().String()), netip.MustParseAddrPort(ln2.Addr().String()), caFile
}

// TestHTTP2 drives real curl over HTTP/2 through the real sidecar: h2
// over intercepted TLS (curl trusting only the sidecar's bundle) and h2c
// with prior knowledge, each a plain request and a server-sent event
// stream whose events are recorded as they flow.
func TestHTTP2(t *testing.T) {
	srv, cl := startServer(t)
	sb := newSandbox(t)
	tlsAddr, h2cAddr, caFile := startH2Upstreams(t, sb.HostIP())
	script := `set -u
curl -sS --fail --http2 --resolve "h2.test:$TLS_PORT:$IP" "https://h2.test:$TLS_PORT/hello?name=tls" -w " [tls http=%{http_version}]\n"
curl -sS --fail --http2 -N --resolve "h2.test:$TLS_PORT:$IP" "https://h2.test:$TLS_PORT/events" -w "[tls-sse http=%{http_version}]\n"
curl -sS --fail --http2-prior-knowledge "http://$IP:$H2C_PORT/hello?name=h2c" -w " [h2c http=%{http_version}]\n"
curl -sS --fail --http2-prior-knowledge -N "http://$IP:$H2C_PORT/events" -w "[h2c-sse http=%{http_version}]\n"
`
	var out, sidecarLog bytes.Buffer
	res, err := runner.Run(t.Context(), runner.Options{
		Command: []string{"/bin/bash", "-c", script},
		Env: []string{
			"IP=" + tlsAddr.Addr().String(), "TLS_PORT=" + fmt.Sprint(tlsAddr.Port()), "H2C_PORT=" + fmt.Sprint(h2cAddr.Port()),
		},
		ExtraCA:     []string{caFile},
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
	for _, want := range []string{
		"hello tls over HTTP/2.0 [tls http=2]",
		"data: one\n\ndata: two\n\n[tls-sse http=2]",
		"hello h2c over HTTP/2.0 [h2c http=2]",
		"data: one\n\ndata: two\n\n[h2c-sse http=2]",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	evs := waitEnded(t, cl, res.Session)
	verifyChain(t, cl, res.Session)
	type conn struct {
		proto  string
		reqs   []*event.HTTPRequest
		resps  []*event.HTTPResponse
		chunks []string
	}
	conns := map[string]*conn{}
	get := func(e *event.Event) *conn {
		c := conns[e.Conn]
		if c == nil {
			c = &conn{}
			conns[e.Conn] = c
		}
		return c
	}
	for _, e := range evs {
		switch e.Kind {
		case event.KindConnOpen:
			get(e).proto = e.Dest.Protocol
		case event.KindHTTPRequest:
			get(e).reqs = append(get(e).reqs, e.HTTPRequest)
		case event.KindHTTPResponse:
			get(e).resps = append(get(e).resps, e.HTTPResponse)
		case event.KindStreamData:
			if d := e.StreamData.Data; d != nil {
				get(e).chunks = append(get(e).chunks, d.Text)
			}
		}
	}
	byProto := map[string][]*conn{}
	for _, c := range conns {
		byProto[c.proto] = append(byProto[c.proto], c)
	}
	for _, proto := range []string{"h2", "h2c"} {
		cs := byProto[proto]
		if len(cs) != 2 {
			dumpEvents(t, evs)
			t.Fatalf("%d %s connections recorded, want 2", len(cs), proto)
		}
		var hello, sse *conn
		for _, c := range cs {
			if len(c.reqs) == 1 && strings.Contains(c.reqs[0].URL, "/events") {
				sse = c
			} else {
				hello = c
			}
		}
		if hello == nil || sse == nil || len(hello.reqs) != 1 || len(hello.resps) != 1 {
			dumpEvents(t, evs)
			t.Fatalf("%s: unexpected exchanges", proto)
		}
		q, r := hello.reqs[0], hello.resps[0]
		if q.Proto != "HTTP/2.0" || q.Method != "GET" || !strings.Contains(q.URL, "/hello?name=") {
			t.Errorf("%s request %+v", proto, q)
		}
		if r.Proto != "HTTP/2.0" || r.Status != 200 || r.Body == nil || !strings.HasSuffix(r.Body.Text, " over HTTP/2.0") {
			t.Errorf("%s response %+v", proto, r)
		}
		// The stream: headers first, then its chunks, then its end.
		if len(sse.resps) != 2 || sse.resps[0].Streamed != event.StreamedHeaders || sse.resps[1].Streamed != event.StreamedEnd {
			t.Errorf("%s stream responses %+v", proto, sse.resps)
		}
		if len(sse.chunks) == 0 || strings.Join(sse.chunks, "") != "data: one\n\ndata: two\n\n" {
			t.Errorf("%s stream chunks %q", proto, sse.chunks)
		}
	}
}
