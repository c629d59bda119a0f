package certs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func newAuthority(t testing.TB, opts Options) *Authority {
	t.Helper()
	a, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestCA(t *testing.T) {
	a := newAuthority(t, Options{Session: "s-1"})
	ca := a.Certificate()
	if !ca.IsCA || !ca.BasicConstraintsValid {
		t.Fatal("CA certificate is not a CA")
	}
	if ca.Subject.CommonName != "Chaperone sidecar CA s-1" {
		t.Errorf("CN = %q", ca.Subject.CommonName)
	}
	if pk, ok := ca.PublicKey.(*ecdsa.PublicKey); !ok || pk.Curve != elliptic.P256() {
		t.Errorf("CA key is %T, want ECDSA P-256", ca.PublicKey)
	}
	if d := time.Until(ca.NotAfter); d > DefaultValidity || d < DefaultValidity-time.Minute {
		t.Errorf("CA valid for %s more, want about %s", d, DefaultValidity)
	}
	b := newAuthority(t, Options{Session: "s-1"})
	if ca.SerialNumber.Cmp(b.Certificate().SerialNumber) == 0 {
		t.Error("two CAs share a serial number")
	}
}

func TestLeafVerifies(t *testing.T) {
	a := newAuthority(t, Options{Session: "s"})
	roots := x509.NewCertPool()
	roots.AddCert(a.Certificate())
	tests := []struct {
		name, verifyAs string
	}{
		{"example.com", "example.com"},
		{"API.Example.COM.", "api.example.com"},
		{"10.0.0.1", "10.0.0.1"},
		{"::ffff:10.0.0.2", "10.0.0.2"},
		{"[2001:db8::1]", "2001:db8::1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := a.Leaf(t.Context(), tt.name)
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Certificate) != 2 {
				t.Errorf("chain has %d certificates, want leaf and CA", len(c.Certificate))
			}
			if _, err := c.Leaf.Verify(x509.VerifyOptions{DNSName: tt.verifyAs, Roots: roots}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Leaf.Verify(x509.VerifyOptions{DNSName: "other.example", Roots: roots}); err == nil {
				t.Error("leaf verifies for another name")
			}
			if c.Leaf.NotAfter.After(a.Certificate().NotAfter) {
				t.Error("leaf outlives its CA")
			}
		})
	}
}

func TestLeafBadName(t *testing.T) {
	a := newAuthority(t, Options{})
	for _, n := range []string{"", ".", "a..b", "bad name", "x/y", strings.Repeat("a", 64) + ".com", "*.example.com"} {
		if _, err := a.Leaf(t.Context(), n); !errors.Is(err, ErrBadName) {
			t.Errorf("Leaf(%q) = %v, want ErrBadName", n, err)
		}
	}
}

func TestLeafCache(t *testing.T) {
	a := newAuthority(t, Options{CacheSize: 2})
	get := func(n string) any {
		t.Helper()
		c, err := a.Leaf(t.Context(), n)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a1 := get("a.test")
	if get("A.test.") != a1 {
		t.Error("same name minted twice")
	}
	get("b.test")
	get("a.test") // a is now the most recent
	get("c.test") // evicts b
	if a.Cached() != 2 {
		t.Errorf("cache holds %d, want 2", a.Cached())
	}
	if got := a.Minted(); got != 3 {
		t.Errorf("minted %d, want 3", got)
	}
	if get("a.test") != a1 {
		t.Error("recently used leaf was evicted")
	}
	get("b.test")
	if got := a.Minted(); got != 4 {
		t.Errorf("minted %d, want 4 (b re-minted after eviction)", got)
	}
}

func TestLeafRenewedBeforeExpiry(t *testing.T) {
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	a := newAuthority(t, Options{Validity: 10 * time.Hour, Now: clock})
	first, err := a.Leaf(t.Context(), "x.test")
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(9*time.Hour + time.Minute) // within renewBefore of expiry
	mu.Unlock()
	second, err := a.Leaf(t.Context(), "x.test")
	if err != nil {
		t.Fatal(err)
	}
	if second == first || a.Minted() != 2 {
		t.Error("an expiring leaf was served from the cache")
	}
}

// TestLeafConcurrent mints from many goroutines: one mint per name
// (singleflight), every caller gets the same certificate. Run with -race.
func TestLeafConcurrent(t *testing.T) {
	a := newAuthority(t, Options{CacheSize: 64})
	const names, callers = 8, 16
	got := make([][]any, names)
	for i := range got {
		got[i] = make([]any, callers)
	}
	var wg sync.WaitGroup
	for n := range names {
		for c := range callers {
			wg.Go(func() {
				cert, err := a.Leaf(t.Context(), fmt.Sprintf("host%d.test", n))
				if err != nil {
					t.Error(err)
					return
				}
				got[n][c] = cert
			})
		}
	}
	wg.Wait()
	if m := a.Minted(); m != names {
		t.Errorf("minted %d leaves for %d names", m, names)
	}
	for n := range names {
		for c := range callers {
			if got[n][c] != got[n][0] {
				t.Fatalf("name %d: callers got different certificates", n)
			}
		}
	}
}

func TestLeafWaiterCancelled(t *testing.T) {
	a := newAuthority(t, Options{})
	a.mu.Lock()
	a.inflight["slow.test"] = &mint{done: make(chan struct{})} // a mint that never ends
	a.mu.Unlock()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := a.Leaf(ctx, "slow.test"); err == nil {
		t.Fatal("waiter did not give up when its context ended")
	}
}

func BenchmarkLeafCached(b *testing.B) {
	a := newAuthority(b, Options{})
	if _, err := a.Leaf(b.Context(), "bench.test"); err != nil {
		b.Fatal(err)
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := a.Leaf(b.Context(), "bench.test"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkLeafMint(b *testing.B) {
	a := newAuthority(b, Options{CacheSize: 1})
	for i := 0; b.Loop(); i++ {
		if _, err := a.Leaf(b.Context(), fmt.Sprintf("h%d.test", i)); err != nil {
			b.Fatal(err)
		}
	}
}
