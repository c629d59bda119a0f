package http2

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

// testPKI is a CA and a leaf for localhost and 127.0.0.1 signed by it.
type testPKI struct {
	pool *x509.CertPool
	leaf tls.Certificate
}

var (
	pkiOnce sync.Once
	pki     *testPKI
	pkiErr  error
)

func testCA(t testing.TB) *testPKI {
	t.Helper()
	pkiOnce.Do(func() { pki, pkiErr = newPKI() })
	if pkiErr != nil {
		t.Fatal(pkiErr)
	}
	return pki
}

func newPKI() (*testPKI, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "chaperone http2 test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &testPKI{pool: pool, leaf: tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key}}, nil
}

func (p *testPKI) serverConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.leaf}, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12}
}

func (p *testPKI) clientConfig() *tls.Config {
	return &tls.Config{RootCAs: p.pool, ServerName: "localhost", NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12}
}

// rec is one record received by memSink.
type rec struct {
	t    time.Time
	req  *event.HTTPRequest
	resp *event.HTTPResponse
	data *event.StreamData
}

// memSink keeps records in order and checks that every blob a record
// names arrived before it.
type memSink struct {
	mu    sync.Mutex
	recs  []rec
	blobs map[string][]byte
	bad   []string
}

func newSink() *memSink { return &memSink{blobs: map[string][]byte{}} }

func (s *memSink) Blob(_ context.Context, ref string, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.blobs[ref] = append([]byte(nil), data...)
	return nil
}

func (s *memSink) checkBody(what string, b *event.Body) {
	if b != nil && b.Ref != "" {
		if _, ok := s.blobs[b.Ref]; !ok {
			s.bad = append(s.bad, what+" names blob "+b.Ref+" before it was stored")
		}
	}
}

func (s *memSink) Request(_ context.Context, t time.Time, r *event.HTTPRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checkBody("request", r.Body)
	s.recs = append(s.recs, rec{t: t, req: r})
	return nil
}

func (s *memSink) Response(_ context.Context, t time.Time, r *event.HTTPResponse) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checkBody("response", r.Body)
	s.recs = append(s.recs, rec{t: t, resp: r})
	return nil
}

func (s *memSink) StreamData(_ context.Context, t time.Time, d *event.StreamData) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checkBody("stream data", d.Data)
	s.recs = append(s.recs, rec{t: t, data: d})
	return nil
}

func (s *memSink) snapshot() []rec {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]rec(nil), s.recs...)
}

func (s *memSink) blob(ref string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.blobs[ref]
}

// waitFor polls the sink until cond holds, failing after a generous bound.
func (s *memSink) waitFor(t testing.TB, what string, cond func([]rec) bool) []rec {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		recs := s.snapshot()
		if cond(recs) {
			s.mu.Lock()
			bad := append([]string(nil), s.bad...)
			s.mu.Unlock()
			if len(bad) > 0 {
				t.Fatalf("sink order violations: %v", bad)
			}
			return recs
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; records: %s", what, dump(recs))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func dump(recs []rec) string {
	out := ""
	for _, r := range recs {
		switch {
		case r.req != nil:
			out += fmt.Sprintf("\n  req  %d %s %s", r.req.Stream, r.req.Method, r.req.URL)
		case r.resp != nil:
			out += fmt.Sprintf("\n  resp %d %d streamed=%q err=%q", r.resp.Stream, r.resp.Status, r.resp.Streamed, r.resp.Error)
		case r.data != nil:
			out += fmt.Sprintf("\n  data %s %+v", r.data.Stream, r.data.Data)
		}
	}
	return out
}

// finalResponses returns the completed response records by stream.
func finalResponses(recs []rec) map[uint64]*event.HTTPResponse {
	m := map[uint64]*event.HTTPResponse{}
	for _, r := range recs {
		if r.resp != nil && r.resp.Streamed != event.StreamedHeaders {
			m[r.resp.Stream] = r.resp
		}
	}
	return m
}

func requests(recs []rec) map[uint64]*event.HTTPRequest {
	m := map[uint64]*event.HTTPRequest{}
	for _, r := range recs {
		if r.req != nil {
			m[r.req.Stream] = r.req
		}
	}
	return m
}

func countFinal(n int) func([]rec) bool {
	return func(recs []rec) bool { return len(finalResponses(recs)) >= n }
}

// harness is a real HTTP/2 client → Recorder → real HTTP/2 upstream, over
// loopback, in h2c or TLS.
type harness struct {
	base   string // the client's URL prefix: scheme://127.0.0.1:port
	client *http.Client
	sink   *memSink
	conns  atomic.Int64 // client connections accepted by the recorder
	stats  chan Stats

	mu      sync.Mutex
	upConns []net.Conn // upstream server side conns
}

func newHarness(t testing.TB, useTLS bool, opts Options, upstream http.Handler) *harness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{sink: newSink(), stats: make(chan Stats, 64)}
	var p *testPKI
	if useTLS {
		p = testCA(t)
	}

	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	upSrv := &http2.Server{}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for {
			c, err := upLn.Accept()
			if err != nil {
				return
			}
			h.mu.Lock()
			h.upConns = append(h.upConns, c)
			h.mu.Unlock()
			go func() {
				if p != nil {
					tc := tls.Server(c, p.serverConfig())
					if err := tc.HandshakeContext(ctx); err != nil {
						c.Close()
						return
					}
					c = tc
				}
				upSrv.ServeConn(c, &http2.ServeConnOpts{Context: ctx, Handler: upstream})
			}()
		}
	}()

	frontLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := New(opts)
	scheme := "http"
	if useTLS {
		scheme = "https"
	}
	go func() {
		defer wg.Done()
		for {
			c, err := frontLn.Accept()
			if err != nil {
				return
			}
			h.conns.Add(1)
			go func() {
				client := net.Conn(c)
				up, err := net.Dial("tcp", upLn.Addr().String())
				if err != nil {
					c.Close()
					return
				}
				if p != nil {
					tc := tls.Server(c, p.serverConfig())
					if err := tc.HandshakeContext(ctx); err != nil || tc.ConnectionState().NegotiatedProtocol != "h2" {
						c.Close()
						up.Close()
						return
					}
					client = tc
					uc := tls.Client(up, p.clientConfig())
					if err := uc.HandshakeContext(ctx); err != nil {
						c.Close()
						up.Close()
						return
					}
					up = uc
				}
				h.stats <- r.Serve(ctx, client, up, scheme, "localhost", h.sink)
			}()
		}
	}()

	tr := &http2.Transport{DisableCompression: true}
	if useTLS {
		tr.TLSClientConfig = p.clientConfig()
	} else {
		tr.AllowHTTP = true
		tr.DialTLSContext = func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
	}
	h.client = &http.Client{Transport: tr}
	h.base = scheme + "://" + frontLn.Addr().String()
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		cancel()
		upLn.Close()
		frontLn.Close()
		h.mu.Lock()
		for _, c := range h.upConns {
			c.Close()
		}
		h.mu.Unlock()
		wg.Wait()
	})
	return h
}

// closeUpstreams cuts every upstream connection from the upstream side.
func (h *harness) closeUpstreams() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.upConns {
		c.Close()
	}
}

// modes runs f for h2c and TLS.
func modes(t *testing.T, f func(t *testing.T, useTLS bool)) {
	for _, m := range []struct {
		name string
		tls  bool
	}{{"h2c", false}, {"tls", true}} {
		t.Run(m.name, func(t *testing.T) { f(t, m.tls) })
	}
}
