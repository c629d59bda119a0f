package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// testClock is an injected clock tests move forward.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

const day = 24 * time.Hour

// pemPool parses every certificate of a PEM file into a pool, as a client
// reading the trust bundle does.
func pemPool(t *testing.T, path string) (*x509.CertPool, int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pool, n := x509.NewCertPool(), 0
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return pool, n
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		pool.AddCert(c)
		n++
	}
}

// handshake makes a real TLS handshake at the clock's time: the server
// shows a leaf for name from a, the client trusts only the CA file in dir.
func handshake(t *testing.T, a *Authority, clock *testClock, dir, name string) error {
	t.Helper()
	roots, _ := pemPool(t, filepath.Join(dir, CAFile))
	cc, sc := net.Pipe()
	defer cc.Close()
	defer sc.Close()
	srv := tls.Server(sc, &tls.Config{
		Time: clock.Now,
		GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return a.Leaf(h.Context(), h.ServerName)
		},
	})
	go func() { _ = srv.HandshakeContext(t.Context()) }()
	cli := tls.Client(cc, &tls.Config{ServerName: name, RootCAs: roots, Time: clock.Now})
	return cli.HandshakeContext(t.Context())
}

// TestRotationKeepsOldPodsWorking runs a CA for five months of an injected
// clock, rotating whenever due, and checks at every step that a client
// trusting the rewritten trust file completes a real TLS handshake with the
// leaf the CA serves: a pod older than the CA's 30 days keeps working.
func TestRotationKeepsOldPodsWorking(t *testing.T) {
	clock := &testClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	a := newAuthority(t, Options{Session: "s", Now: clock.Now})
	dir := t.TempDir()
	publish := func(trust []byte) error { return WriteTrust(dir, trust, nil) }
	if err := publish(a.TrustPEM()); err != nil {
		t.Fatal(err)
	}
	rotations := 0
	for step := 0; step <= 150; step++ {
		rotated, err := a.Rotate(publish)
		if err != nil {
			t.Fatalf("day %d: %v", step, err)
		}
		if rotated {
			rotations++
		}
		if err := handshake(t, a, clock, dir, "api.test"); err != nil {
			t.Fatalf("day %d: handshake with a leaf of the current CA: %v", step, err)
		}
		clock.advance(day)
	}
	// Thirty-day CAs renewed ten days before expiry: one every 20 days.
	if rotations < 7 || rotations > 8 {
		t.Errorf("%d rotations in 150 days, want 7 or 8", rotations)
	}
}

func TestRotateSteps(t *testing.T) {
	clock := &testClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	a := newAuthority(t, Options{Session: "s", Now: clock.Now})
	dir := t.TempDir()
	publish := func(trust []byte) error { return WriteTrust(dir, trust, nil) }
	if err := publish(a.TrustPEM()); err != nil {
		t.Fatal(err)
	}
	old := a.Certificate()
	oldLeaf, err := a.Leaf(t.Context(), "api.test")
	if err != nil {
		t.Fatal(err)
	}

	// Not due on day 19 of 30.
	clock.advance(19 * day)
	if rotated, err := a.Rotate(publish); rotated || err != nil {
		t.Fatalf("rotate on day 19: %v %v, want not due", rotated, err)
	}

	// Day 21: due. A failing publish keeps the old CA and its cache.
	clock.advance(2 * day)
	if !a.RotateDue() {
		t.Fatal("not due 9 days before expiry")
	}
	errDisk := errors.New("disk full")
	if _, err := a.Rotate(func([]byte) error { return errDisk }); !errors.Is(err, errDisk) {
		t.Fatalf("rotate with a failing publish: %v", err)
	}
	if !a.Certificate().Equal(old) {
		t.Fatal("CA replaced although its trust was not published")
	}
	if l, _ := a.Leaf(t.Context(), "api.test"); l != oldLeaf {
		t.Fatal("cache dropped although the CA was not replaced")
	}

	// A publish that works: the new CA is in the trust files before it
	// signs anything, with the old one beside it.
	var published []byte
	rotated, err := a.Rotate(func(trust []byte) error {
		published = trust
		if !a.Certificate().Equal(old) {
			t.Error("new CA in use before its trust was published")
		}
		return publish(trust)
	})
	if !rotated || err != nil {
		t.Fatalf("rotate on day 21: %v %v", rotated, err)
	}
	cur := a.Certificate()
	if cur.Equal(old) || !cur.NotAfter.After(old.NotAfter) {
		t.Fatal("CA not replaced by a newer one")
	}
	for _, f := range []string{CAFile, BundleFile} {
		if _, n := pemPool(t, filepath.Join(dir, f)); n != 2 {
			t.Errorf("%s holds %d certificates, want the new CA and the old", f, n)
		}
	}
	if string(published) != string(a.TrustPEM()) {
		t.Error("published trust differs from TrustPEM")
	}
	minted := a.Minted()
	newLeaf, err := a.Leaf(t.Context(), "api.test")
	if err != nil {
		t.Fatal(err)
	}
	if newLeaf == oldLeaf || a.Minted() != minted+1 {
		t.Fatal("leaf served from the cache of the old CA")
	}
	if err := newLeaf.Leaf.CheckSignatureFrom(cur); err != nil {
		t.Errorf("new leaf not signed by the new CA: %v", err)
	}
	// Both leaves verify against the published trust during the overlap.
	roots, _ := pemPool(t, filepath.Join(dir, CAFile))
	for _, l := range []*tls.Certificate{oldLeaf, newLeaf} {
		if _, err := l.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "api.test", CurrentTime: clock.Now()}); err != nil {
			t.Errorf("leaf of %s does not verify during the overlap: %v", l.Leaf.Issuer.SerialNumber, err)
		}
	}

	// Day 31: the old CA expired; TrustPEM drops it.
	clock.advance(10 * day)
	if got := a.TrustPEM(); string(got) != string(a.CertPEM()) {
		t.Error("expired CA still in TrustPEM")
	}
}

func TestRotateLoop(t *testing.T) {
	clock := &testClock{now: time.Now()}
	a := newAuthority(t, Options{Session: "s", Now: clock.Now})
	clock.advance(25 * day) // due at the loop's first check
	done := make(chan []byte, 1)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	old := a.Certificate()
	go a.RotateLoop(ctx, time.Hour, func(trust []byte) error {
		select {
		case done <- trust:
		default:
		}
		return nil
	}, nil)
	<-done
	cancel()
	// The switch follows the publish; wait for it through the lock.
	for a.Certificate().Equal(old) {
		time.Sleep(time.Millisecond)
	}
}
