package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

// loopFirstDial makes the proxy's first upstream dial land on the proxy
// itself, as a conntrack entry left by an agent's connection with the
// same source port would; later dials go where they were meant to. It
// returns the option and a function to call with the proxy's address.
func loopFirstDial() (func(*Options), func(string)) {
	var self atomic.Pointer[string]
	var dials atomic.Int32
	mod := func(o *Options) {
		o.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if dials.Add(1) == 1 {
				addr = *self.Load()
			}
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
	}
	return mod, func(addr string) { self.Store(&addr) }
}

// TestOwnConnectionLoopHTTP: a looped upstream connection is relayed on,
// and the exchange is recorded once.
func TestOwnConnectionLoopHTTP(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "hello")
	}))
	defer up.Close()
	rec := newMemRecorder()
	mod, setSelf := loopFirstDial()
	p, addr := startProxy(t, rec, up.Listener.Addr().String(), mod)
	setSelf(addr)

	client := proxiedClient(t, addr)
	resp, err := client.Get("http://api.internal/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	client.CloseIdleConnections()
	if resp.StatusCode != 200 || string(body) != "hello" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	checkRecordedOnce(t, rec, p)
}

// TestOwnConnectionLoopTLS: an intercepted connection whose upstream dial
// comes back to the proxy still reaches the real upstream and verifies
// its certificate, instead of being refused for the proxy's own leaf.
func TestOwnConnectionLoopTLS(t *testing.T) {
	w := newTLSWorld(t)
	rec := newMemRecorder()
	mod, setSelf := loopFirstDial()
	p, addr := startProxy(t, rec, w.upTarget, func(o *Options) {
		mod(o)
		o.TLS = &TLSOptions{Minter: w.sidecar, RootCAs: w.upCA}
	})
	setSelf(addr)

	resp, body, err := httpsGet(t, addr, &tls.Config{ServerName: "api.test", RootCAs: w.sideCA}, "ping")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || body != "hello api.test ping" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	checkRecordedOnce(t, rec, p)
}

// checkRecordedOnce checks that one connection with one exchange was
// recorded, not refused, and that the proxy counted one loop.
func checkRecordedOnce(t *testing.T, rec *memRecorder, p *Proxy) {
	t.Helper()
	evs := rec.closes(t, 1)
	opens := ofKind(evs, event.KindConnOpen)
	if len(opens) != 1 || opens[0].ConnOpen.Refused != "" {
		for _, o := range opens {
			t.Logf("conn.open %+v", o.ConnOpen)
		}
		t.Fatalf("%d conn.open events, want one that is not refused", len(opens))
	}
	if n := len(ofKind(evs, event.KindHTTPRequest)); n != 1 {
		t.Errorf("%d requests recorded, want 1", n)
	}
	if n := testutil.ToFloat64(p.m.loops); n != 1 {
		t.Errorf("loops counter %v, want 1", n)
	}
}

// A client with the local address of an upstream connection to another
// destination is no loop: the kernel gives one port to connections to
// different destinations. Each pair is forgotten on its own.
func TestOwnConnsMatchDestination(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d1 := netip.MustParseAddrPort("192.0.2.1:443")
	d2 := netip.MustParseAddrPort("[::ffff:192.0.2.2]:443")
	var o ownConns
	rm1 := o.add(c, d1)
	rm2 := o.add(c, d2)
	if !o.has(c.LocalAddr(), d1) || !o.has(c.LocalAddr(), netip.MustParseAddrPort("192.0.2.2:443")) {
		t.Fatal("own connection not recognised")
	}
	if o.has(c.LocalAddr(), netip.MustParseAddrPort("192.0.2.3:443")) {
		t.Error("a client to another destination taken for a loop")
	}
	rm1()
	if o.has(c.LocalAddr(), d1) || !o.has(c.LocalAddr(), d2) {
		t.Error("removing one pair removed the wrong one")
	}
	rm2()
	if o.has(c.LocalAddr(), d2) {
		t.Error("pair still held after its removal")
	}
}
