package proxy

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/proccpu"
	"github.com/chaperone-dev/chaperone/sidecar/certs"
)

// tlsWorld is an HTTPS upstream with its own test CA, certified for
// "api.test" (any SNI) and for 127.0.0.1 (no SNI), and a sidecar CA.
type tlsWorld struct {
	up       *httptest.Server
	upCA     *x509.CertPool // trusts the upstream's test CA
	sidecar  *certs.Authority
	sideCA   *x509.CertPool // trusts the sidecar's CA only
	upTarget string
	// upHandshakes and upResumed count the upstream's TLS handshakes and
	// those that resumed a session; upCurve is the key exchange of the
	// latest.
	upHandshakes, upResumed atomic.Int64
	upCurve                 atomic.Uint32
}

func newTLSWorld(t *testing.T) *tlsWorld { return newTLSWorldB(t) }

func newTLSWorldB(t testing.TB) *tlsWorld {
	t.Helper()
	testCA, err := certs.New(certs.Options{Session: "upstream-test-ca"})
	if err != nil {
		t.Fatal(err)
	}
	named, err := testCA.Leaf(t.Context(), "api.test")
	if err != nil {
		t.Fatal(err)
	}
	byIP, err := testCA.Leaf(t.Context(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Proto", r.Proto)
		_, _ = io.WriteString(w, "hello "+r.Host+" "+string(body))
	}))
	w := &tlsWorld{upCA: x509.NewCertPool(), sideCA: x509.NewCertPool()}
	up.TLS = &tls.Config{
		Certificates:   []tls.Certificate{*byIP},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return named, nil },
		VerifyConnection: func(cs tls.ConnectionState) error {
			w.upHandshakes.Add(1)
			w.upCurve.Store(uint32(cs.CurveID))
			if cs.DidResume {
				w.upResumed.Add(1)
			}
			return nil
		},
	}
	up.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point
	up.StartTLS()
	t.Cleanup(up.Close)
	sc, err := certs.New(certs.Options{Session: "s"})
	if err != nil {
		t.Fatal(err)
	}
	w.up, w.sidecar, w.upTarget = up, sc, up.Listener.Addr().String()
	w.upCA.AddCert(testCA.Certificate())
	w.sideCA.AddCert(sc.Certificate())
	return w
}

// proxy starts a proxy intercepting with the world's sidecar CA; trusted
// says whether it trusts the upstream's test CA.
func (w *tlsWorld) proxy(t *testing.T, trusted bool, noIntercept ...string) (*memRecorder, string) {
	t.Helper()
	roots := x509.NewCertPool()
	if trusted {
		roots = w.upCA
	}
	bp, err := ParseBypass(noIntercept)
	if err != nil {
		t.Fatal(err)
	}
	rec := newMemRecorder()
	_, addr := startProxy(t, rec, w.upTarget, func(o *Options) {
		o.TLS = &TLSOptions{Minter: w.sidecar, RootCAs: roots, NoIntercept: bp}
	})
	return rec, addr
}

func httpsGet(t *testing.T, addr string, cfg *tls.Config, body string) (*http.Response, string, error) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return nil, "", err
	}
	defer c.Close()
	host := cfg.ServerName
	if host == "" {
		host = "127.0.0.1"
	}
	req, _ := http.NewRequest("POST", "https://"+host+"/v1/x?q=1", strings.NewReader(body))
	req.Close = true
	if err := req.Write(c); err != nil {
		return nil, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

func TestTLSIntercept(t *testing.T) {
	w := newTLSWorld(t)
	tests := []struct {
		name     string
		sni      string
		alpn     []string
		wantHost string
	}{
		{"sni", "api.test", []string{"h2", "http/1.1"}, "api.test"},
		{"no alpn", "api.test", nil, "api.test"},
		{"no sni", "", []string{"http/1.1"}, "127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, addr := w.proxy(t, true)
			cfg := &tls.Config{ServerName: tt.sni, RootCAs: w.sideCA, NextProtos: tt.alpn}
			if tt.sni == "" {
				cfg.ServerName = "127.0.0.1" // an IP: Go sends no SNI and checks the IP SAN
			}
			resp, body, err := httpsGet(t, addr, cfg, "ping")
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 200 || body != "hello "+tt.wantHost+" ping" {
				t.Fatalf("got %d %q", resp.StatusCode, body)
			}
			evs := rec.closes(t, 1)
			kinds := []string{}
			for _, e := range evs {
				kinds = append(kinds, string(e.Kind))
				if err := e.Validate(); err != nil {
					t.Error(err)
				}
			}
			if got := strings.Join(kinds, " "); got != "conn.open http.request http.response conn.close" {
				t.Fatalf("events %s", got)
			}
			open := evs[0]
			if open.Dest.Protocol != "https" || open.Dest.Host != tt.sni || open.ConnOpen.Refused != "" {
				t.Errorf("conn.open dest %+v %+v", open.Dest, open.ConnOpen)
			}
			ti := open.ConnOpen.TLS
			if ti == nil || !ti.Intercepted || ti.SNI != tt.sni || ti.Version != "TLS 1.3" || ti.Cipher == "" {
				t.Errorf("conn.open tls %+v", ti)
			}
			if len(tt.alpn) > 0 && ti.Protocol != "http/1.1" {
				t.Errorf("negotiated %q, want http/1.1", ti.Protocol)
			}
			req, res := evs[1].HTTPRequest, evs[2].HTTPResponse
			if req.Method != "POST" || req.URL != "/v1/x?q=1" || req.Host != tt.wantHost || req.Body == nil || req.Body.Text != "ping" {
				t.Errorf("request %+v", req)
			}
			if res.Status != 200 || res.Body == nil || res.Body.Text != "hello "+tt.wantHost+" ping" {
				t.Errorf("response %+v", res)
			}
			cls := evs[3].ConnClose
			if cls.TLS == nil || !cls.TLS.Intercepted || cls.BytesUp == 0 || cls.BytesDown == 0 {
				t.Errorf("conn.close %+v", cls)
			}
		})
	}
	if w.sidecar.Minted() != 2 {
		t.Errorf("minted %d leaves for two names", w.sidecar.Minted())
	}
}

func TestTLSRefused(t *testing.T) {
	w := newTLSWorld(t)
	tests := []struct {
		name    string
		trusted bool
		sni     string
		want    string
	}{
		{"untrusted upstream", false, "api.test", "certificate signed by unknown authority"},
		{"name mismatch", true, "wrong.test", "not wrong.test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, addr := w.proxy(t, tt.trusted)
			_, _, err := httpsGet(t, addr, &tls.Config{ServerName: tt.sni, RootCAs: w.sideCA}, "")
			if err == nil || !strings.Contains(err.Error(), "remote error") {
				t.Fatalf("client got %v, want a TLS alert", err)
			}
			evs := rec.waitFor(t, "conn.open", func(evs []*event.Event) bool { return len(evs) > 0 })
			open := evs[0]
			if open.Kind != event.KindConnOpen || !strings.Contains(open.ConnOpen.Refused, tt.want) || !strings.Contains(open.ConnOpen.Refused, "upstream tls") {
				t.Fatalf("conn.open %+v", open.ConnOpen)
			}
			if open.ConnOpen.TLS == nil || open.ConnOpen.TLS.SNI != tt.sni || open.ConnOpen.TLS.Intercepted {
				t.Errorf("conn.open tls %+v", open.ConnOpen.TLS)
			}
		})
	}
}

// TestTLSUpstreamGroups: the upstream leg offers the key exchanges the
// client offered, so a classical client costs no post-quantum hybrid.
func TestTLSUpstreamGroups(t *testing.T) {
	w := newTLSWorld(t)
	// Every client gets a new upstream connection (no reuse): its key
	// exchange is the one looked at.
	_, addr := startProxy(t, newMemRecorder(), w.upTarget, func(o *Options) {
		o.TLS = &TLSOptions{Minter: w.sidecar, RootCAs: w.upCA}
		o.UpstreamIdle = -1
	})
	tests := []struct {
		name   string
		client []tls.CurveID
		want   tls.CurveID
	}{
		{"classical", []tls.CurveID{tls.X25519, tls.CurveP256}, tls.X25519},
		{"p256 only", []tls.CurveID{tls.CurveP256}, tls.CurveP256},
		{"go default", nil, tls.X25519MLKEM768},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &tls.Config{ServerName: "api.test", RootCAs: w.sideCA, CurvePreferences: tt.client}
			if _, _, err := httpsGet(t, addr, cfg, ""); err != nil {
				t.Fatal(err)
			}
			if got := tls.CurveID(w.upCurve.Load()); got != tt.want {
				t.Errorf("upstream key exchange %v, want %v", got, tt.want)
			}
		})
	}
}

func TestGroups(t *testing.T) {
	tests := []struct {
		name   string
		client []uint16
		want   []tls.CurveID
	}{
		{"none", nil, nil},
		{"client order, unknown and repeated dropped", []uint16{0x0a0a, 23, 30, 29, 23}, []tls.CurveID{tls.CurveP256, tls.X25519}},
		{"hybrid with classical", []uint16{4588, 29}, []tls.CurveID{tls.X25519MLKEM768, tls.X25519}},
		{"hybrid only: default", []uint16{4588}, nil},
		{"nothing known: default", []uint16{30, 256}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := groups(tt.client); !slices.Equal(got, tt.want) {
				t.Errorf("groups(%v) = %v, want %v", tt.client, got, tt.want)
			}
		})
	}
}

func TestTLSClientDistrustsSidecar(t *testing.T) {
	w := newTLSWorld(t)
	rec, addr := w.proxy(t, true)
	// The client trusts only the upstream's CA, not the sidecar's.
	if _, _, err := httpsGet(t, addr, &tls.Config{ServerName: "api.test", RootCAs: w.upCA}, ""); err == nil {
		t.Fatal("client accepted the sidecar's leaf without trusting its CA")
	}
	evs := rec.waitFor(t, "conn.open", func(evs []*event.Event) bool { return len(evs) > 0 })
	if r := evs[0].ConnOpen.Refused; !strings.Contains(r, "client tls") {
		t.Errorf("refused %q", r)
	}
}

func TestTLSPassThrough(t *testing.T) {
	w := newTLSWorld(t)
	tests := []struct {
		name        string
		noIntercept []string
		alpn        []string
	}{
		{"name", []string{"api.test"}, []string{"http/1.1"}},
		{"wildcard", []string{"*.test"}, nil},
		{"cidr", []string{"127.0.0.0/8"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, addr := w.proxy(t, true, tt.noIntercept...)
			// Pinned: the client trusts only the upstream's own CA.
			cfg := &tls.Config{ServerName: "api.test", RootCAs: w.upCA, NextProtos: tt.alpn}
			resp, body, err := httpsGet(t, addr, cfg, "x")
			switch {
			case err != nil:
				t.Fatal(err)
			case resp.StatusCode != 200 || body != "hello api.test x":
				t.Fatalf("got %d %q", resp.StatusCode, body)
			}
			evs := rec.closes(t, 1)
			if n := len(ofKind(evs, event.KindHTTPRequest)); n != 0 {
				t.Errorf("%d requests decoded from a passed-through connection", n)
			}
			open, cls := evs[0], ofKind(evs, event.KindConnClose)[0]
			if open.Dest.Protocol != "tls" || open.Dest.Host != "api.test" {
				t.Errorf("dest %+v", open.Dest)
			}
			if ti := cls.ConnClose.TLS; ti == nil || ti.Intercepted || ti.SNI != "api.test" || ti.Version != "" {
				t.Errorf("conn.close tls %+v", ti)
			}
		})
	}
	if w.sidecar.Minted() != 0 {
		t.Errorf("minted %d leaves for passed-through connections", w.sidecar.Minted())
	}
}

// TestTLSOtherALPNRelayedRaw intercepts a protocol the sidecar does not
// decode: it is relayed raw over the two TLS connections.
func TestTLSOtherALPNRelayedRaw(t *testing.T) {
	testCA, err := certs.New(certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := testCA.Leaf(t.Context(), "echo.test")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{*leaf}, NextProtos: []string{"x-echo"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	sc, _ := certs.New(certs.Options{})
	roots := x509.NewCertPool()
	roots.AddCert(testCA.Certificate())
	rec := newMemRecorder()
	_, addr := startProxy(t, rec, ln.Addr().String(), func(o *Options) {
		o.TLS = &TLSOptions{Minter: sc, RootCAs: roots}
	})
	sideCA := x509.NewCertPool()
	sideCA.AddCert(sc.Certificate())
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "echo.test", RootCAs: sideCA, NextProtos: []string{"x-echo"}})
	if err != nil {
		t.Fatal(err)
	}
	if p := c.ConnectionState().NegotiatedProtocol; p != "x-echo" {
		t.Errorf("negotiated %q", p)
	}
	_, _ = io.WriteString(c, "ping\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "ping\n" {
		t.Fatalf("echo %q %v", line, err)
	}
	c.Close()
	evs := rec.closes(t, 1)
	open := evs[0]
	if open.Dest.Protocol != "tls" || open.ConnOpen.TLS == nil || !open.ConnOpen.TLS.Intercepted || open.ConnOpen.TLS.Protocol != "x-echo" {
		t.Errorf("conn.open %+v %+v", open.Dest, open.ConnOpen.TLS)
	}
}

func TestParseBypass(t *testing.T) {
	b, err := ParseBypass([]string{"api.example.com", "*.corp.test", "10.0.0.0/8", "192.168.1.7", "SVC.Local."})
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr
	tests := []struct {
		host string
		addr netip.Addr
		want bool
	}{
		{"api.example.com", ip("1.2.3.4"), true},
		{"API.EXAMPLE.COM.", ip("1.2.3.4"), true},
		{"www.example.com", ip("1.2.3.4"), false},
		{"a.corp.test", ip("1.2.3.4"), true},
		{"a.b.corp.test", ip("1.2.3.4"), true},
		{"corp.test", ip("1.2.3.4"), false},
		{"xcorp.test", ip("1.2.3.4"), false},
		{"", ip("10.9.8.7"), true},
		{"other.test", ip("::ffff:10.1.1.1"), true},
		{"", ip("192.168.1.7"), true},
		{"", ip("192.168.1.8"), false},
		{"svc.local", ip("1.2.3.4"), true},
	}
	for _, tt := range tests {
		if got := b.Match(tt.host, tt.addr); got != tt.want {
			t.Errorf("Match(%q, %s) = %v, want %v", tt.host, tt.addr, got, tt.want)
		}
	}
	var none *Bypass
	if none.Match("x", ip("1.1.1.1")) {
		t.Error("nil Bypass matched")
	}
	all, _ := ParseBypass([]string{"*"})
	if !all.Match("", ip("8.8.8.8")) {
		t.Error("* did not match")
	}
	for _, bad := range []string{"", "a.*.com", "*.a.*.com", "10.0.0.0/33", "1.2.3.4/x"} {
		if _, err := ParseBypass([]string{bad}); err == nil {
			t.Errorf("ParseBypass(%q) took it", bad)
		}
	}
}

var _ net.Conn = (*prefixConn)(nil)

// BenchmarkTLSNewConn measures a new intercepted connection with one
// request (leaf cached, sessions resumed on both legs) against the same
// request straight to the upstream, for two kinds of client: one like wrk
// (OpenSSL 3.0: classical key exchange, no verification) and one like a Go
// program (the hybrid post-quantum key exchange, verification). Both
// resume sessions, as wrk does. The recorder drops events:
// BenchmarkProxyRecorded covers recording. cpu-us/op is the whole
// process's CPU (client, proxy and upstream); up-resumed/op counts the
// upstream handshakes that resumed a session.
func BenchmarkTLSNewConn(b *testing.B) {
	clients := []struct {
		name string
		cfg  func(roots *x509.CertPool) *tls.Config
	}{
		{"wrk-like", func(*x509.CertPool) *tls.Config {
			// wrk does not verify the server.
			return &tls.Config{ServerName: "api.test", InsecureSkipVerify: true, ClientSessionCache: tls.NewLRUClientSessionCache(8),
				CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256}}
		}},
		{"go", func(roots *x509.CertPool) *tls.Config {
			return &tls.Config{ServerName: "api.test", RootCAs: roots, ClientSessionCache: tls.NewLRUClientSessionCache(8)}
		}},
	}
	for _, cl := range clients {
		// sidecar keeps upstream connections (the default); sidecar-own
		// gives every client connection its own (--upstream-idle 0).
		for _, via := range []string{"direct", "sidecar", "sidecar-own"} {
			b.Run(cl.name+"/"+via, func(b *testing.B) {
				w := newTLSWorldB(b)
				addr := w.upTarget
				roots := w.upCA
				if via != "direct" {
					_, addr = startProxy(b, nullRecorder{}, w.upTarget, func(o *Options) {
						o.TLS = &TLSOptions{Minter: w.sidecar, RootCAs: w.upCA}
						if via == "sidecar-own" {
							o.UpstreamIdle = -1
						}
					})
					roots = w.sideCA
				}
				cfg := cl.cfg(roots)
				newConnGet(b, addr, cfg) // mint the leaf, fill the session caches
				resumed := 0
				up0, upResumed0 := w.upHandshakes.Load(), w.upResumed.Load()
				cpu0 := proccpu.Used()
				for b.Loop() {
					if newConnGet(b, addr, cfg) {
						resumed++
					}
				}
				b.ReportMetric(float64((proccpu.Used()-cpu0).Microseconds())/float64(b.N), "cpu-us/op")
				b.ReportMetric(float64(resumed)/float64(b.N), "resumed/op")
				if n := w.upHandshakes.Load() - up0; via != "direct" && n > 0 {
					b.ReportMetric(float64(w.upResumed.Load()-upResumed0)/float64(n), "up-resumed/op")
				}
			})
		}
	}
}

// newConnGet makes one GET on a new TLS connection to addr and reports
// whether the handshake resumed a session.
func newConnGet(b *testing.B, addr string, cfg *tls.Config) bool {
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n"); err != nil {
		b.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("status %d", resp.StatusCode)
	}
	return c.ConnectionState().DidResume
}
