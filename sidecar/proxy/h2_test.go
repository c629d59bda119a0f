package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/sidecar/certs"
)

// sseHandler answers /events with two server-sent events, the second only
// once release is closed, and everything else with an echo.
func sseHandler(release <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/events" {
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = io.WriteString(w, "data: one\n\n")
			http.NewResponseController(w).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
			_, _ = io.WriteString(w, "data: two\n\n")
			return
		}
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Proto", r.Proto)
		_, _ = io.WriteString(w, r.Proto+" "+r.Host+" "+string(body))
	})
}

// h2Client returns an HTTP/2 client whose connections all go to addr:
// over TLS trusting roots, or h2c with prior knowledge when roots is nil.
func h2Client(addr string, roots *tls.Config) *http.Client {
	var d net.Dialer
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", addr)
		},
		TLSClientConfig:   roots,
		DisableKeepAlives: false,
	}
	var p http.Protocols
	if roots == nil {
		p.SetUnencryptedHTTP2(true)
	} else {
		p.SetHTTP2(true)
	}
	tr.Protocols = &p
	return &http.Client{Transport: tr}
}

// exerciseH2 sends a POST and reads an SSE stream through c, checking
// that the second event comes only after the first was recorded.
func exerciseH2(t *testing.T, c *http.Client, rec *memRecorder, base string, release chan struct{}) {
	t.Helper()
	resp, err := c.Post(base+"/echo?q=1", "text/plain", strings.NewReader("ping"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || !strings.HasPrefix(string(b), "HTTP/2.0 ") || !strings.HasSuffix(string(b), " ping") {
		t.Fatalf("echo: %s %q", resp.Proto, b)
	}

	resp, err = c.Get(base + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || line != "data: one\n" {
		t.Fatalf("first event %q %v", line, err)
	}
	// The first event is recorded while the stream is open.
	rec.waitFor(t, "first stream.data", func(evs []*event.Event) bool {
		for _, e := range ofKind(evs, event.KindStreamData) {
			if e.StreamData.Data != nil && strings.Contains(e.StreamData.Data.Text, "data: one") {
				return true
			}
		}
		return false
	})
	close(release)
	rest, _ := io.ReadAll(br)
	if !strings.Contains(string(rest), "data: two") {
		t.Fatalf("rest of the stream %q", rest)
	}
}

// checkH2Events checks the records of exerciseH2.
func checkH2Events(t *testing.T, evs []*event.Event, proto, host string) {
	t.Helper()
	open := ofKind(evs, event.KindConnOpen)[0]
	if open.Dest.Protocol != proto || open.ConnOpen.Refused != "" {
		t.Errorf("conn.open %+v %+v", open.Dest, open.ConnOpen)
	}
	reqs, resps := ofKind(evs, event.KindHTTPRequest), ofKind(evs, event.KindHTTPResponse)
	if len(reqs) != 2 {
		t.Fatalf("%d requests", len(reqs))
	}
	q := reqs[0].HTTPRequest
	if q.Proto != "HTTP/2.0" || q.Method != "POST" || !strings.HasSuffix(q.URL, "/echo?q=1") || q.Body == nil || q.Body.Text != "ping" || q.Host != host {
		t.Errorf("request %+v", q)
	}
	var sawEcho, sawStreamEnd bool
	for _, e := range resps {
		r := e.HTTPResponse
		if r.Proto != "HTTP/2.0" || r.Status != 200 {
			t.Errorf("response %+v", r)
		}
		if r.Stream == q.Stream && r.Body != nil && strings.HasSuffix(r.Body.Text, " ping") {
			sawEcho = true
		}
		if r.Streamed == event.StreamedEnd {
			sawStreamEnd = true
		}
	}
	if !sawEcho || !sawStreamEnd {
		t.Errorf("echo response %v, streamed end %v", sawEcho, sawStreamEnd)
	}
	var chunks string
	for _, e := range ofKind(evs, event.KindStreamData) {
		if e.StreamData.Data != nil {
			chunks += e.StreamData.Data.Text
		}
	}
	if chunks != "data: one\n\ndata: two\n\n" {
		t.Errorf("stream chunks %q", chunks)
	}
	cls := ofKind(evs, event.KindConnClose)[0].ConnClose
	if cls.BytesUp == 0 || cls.BytesDown == 0 {
		t.Errorf("conn.close %+v", cls)
	}
}

func TestH2OverTLS(t *testing.T) {
	testCA, err := certs.New(certs.Options{Session: "upstream-test-ca"})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := testCA.Leaf(t.Context(), "api.test")
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	up := httptest.NewUnstartedServer(sseHandler(release))
	up.EnableHTTP2 = true
	up.TLS = &tls.Config{Certificates: []tls.Certificate{*leaf}}
	up.StartTLS()
	t.Cleanup(up.Close)
	sc, err := certs.New(certs.Options{Session: "s"})
	if err != nil {
		t.Fatal(err)
	}
	rec := newMemRecorder()
	_, addr := startProxy(t, rec, up.Listener.Addr().String(), func(o *Options) {
		o.TLS = &TLSOptions{Minter: sc, RootCAs: poolOf(testCA.Certificate())}
	})
	c := h2Client(addr, &tls.Config{RootCAs: poolOf(sc.Certificate())})
	exerciseH2(t, c, rec, "https://api.test", release)
	c.CloseIdleConnections()
	evs := rec.closes(t, 1)
	checkH2Events(t, evs, "h2", "api.test")
	ti := ofKind(evs, event.KindConnOpen)[0].ConnOpen.TLS
	if ti == nil || !ti.Intercepted || ti.Protocol != "h2" {
		t.Errorf("tls %+v", ti)
	}
}

func TestH2C(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewUnstartedServer(sseHandler(release))
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	up.Config.Protocols = &p
	up.Start()
	t.Cleanup(up.Close)
	rec := newMemRecorder()
	_, addr := startProxy(t, rec, up.Listener.Addr().String(), nil)
	c := h2Client(addr, nil)
	exerciseH2(t, c, rec, "http://svc.test", release)
	c.CloseIdleConnections()
	evs := rec.closes(t, 1)
	checkH2Events(t, evs, "h2c", "svc.test")
	if ti := ofKind(evs, event.KindConnOpen)[0].ConnOpen.TLS; ti != nil {
		t.Errorf("tls %+v on h2c", ti)
	}
}

func poolOf(c *x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c)
	return p
}

// TestH2OnlyToHTTP1Upstream: a client that offers only h2 is intercepted;
// the upstream speaks http/1.1 only, and its ALPN refusal reaches the
// client as the same alert.
func TestH2OnlyToHTTP1Upstream(t *testing.T) {
	w := newTLSWorld(t)
	rec, addr := w.proxy(t, true)
	_, _, err := httpsGet(t, addr, &tls.Config{ServerName: "api.test", RootCAs: w.sideCA, NextProtos: []string{"h2"}}, "x")
	if err == nil || !strings.Contains(err.Error(), "no application protocol") {
		t.Fatalf("client got %v, want the upstream's ALPN alert", err)
	}
	evs := rec.waitFor(t, "refused conn.open", func(evs []*event.Event) bool { return len(ofKind(evs, event.KindConnOpen)) == 1 })
	if o := evs[0].ConnOpen; o.Refused == "" || o.TLS == nil {
		t.Errorf("conn.open %+v", o)
	}
}
