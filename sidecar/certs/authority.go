package certs

import (
	"container/list"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for Options.
const (
	DefaultValidity  = 30 * 24 * time.Hour
	DefaultCacheSize = 1024
	// backdate covers clients whose clock is a little behind ours.
	backdate = time.Hour
	// renewBefore re-mints a cached leaf this long before it expires.
	renewBefore = time.Hour
)

// Options configure an Authority.
type Options struct {
	// Session names the CA: "Chaperone sidecar CA <session>".
	Session string
	// Validity is how long the CA and its leaves are valid (default 30
	// days). Leaves never outlive the CA.
	Validity time.Duration
	// CacheSize bounds the cached leaves (default 1024 names).
	CacheSize int
	// RotateBefore is how long before the CA expires Rotate replaces it
	// (default a third of Validity: ten days for thirty). The old CA stays
	// trusted, in TrustPEM, until it expires.
	RotateBefore time.Duration
	// Now is the clock; default time.Now. Tests set it.
	Now func() time.Time
}

// Authority is the sidecar's CA. It is safe for concurrent use. A pod may
// outlive the CA's validity: Rotate replaces the CA before it expires.
type Authority struct {
	opts Options

	mu sync.Mutex
	// cur signs new leaves; prev is the CA it replaced, still trusted by
	// the agent (TrustPEM) until it expires, nil before the first rotation.
	cur, prev *generation
	lru       *list.List // of *entry, most recent first
	byName    map[string]*list.Element
	inflight  map[string]*mint
	minted    atomic.Uint64
}

type entry struct {
	name string
	cert *tls.Certificate
	gen  *generation // the CA that signed cert
}

// generation is one CA: its certificate, PEM and in-memory key.
type generation struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

// mint is a leaf being minted; waiters block on done.
type mint struct {
	done chan struct{}
	cert *tls.Certificate
	err  error
}

// ErrBadName is returned by Leaf for a name no certificate can carry.
var ErrBadName = errors.New("invalid certificate name")

// New creates a CA with a fresh ECDSA P-256 key held only in memory.
func New(opts Options) (*Authority, error) {
	if opts.Validity <= 0 {
		opts.Validity = DefaultValidity
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = DefaultCacheSize
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.RotateBefore <= 0 || opts.RotateBefore >= opts.Validity {
		opts.RotateBefore = opts.Validity / 3
	}
	gen, err := newGeneration(opts)
	if err != nil {
		return nil, err
	}
	return &Authority{
		opts:     opts,
		cur:      gen,
		lru:      list.New(),
		byName:   map[string]*list.Element{},
		inflight: map[string]*mint{},
	}, nil
}

// newGeneration creates a CA certificate for a fresh ECDSA P-256 key.
func newGeneration(opts Options) (*generation, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca key: %w", err)
	}
	serial, err := randSerial()
	if err != nil {
		return nil, err
	}
	now := opts.Now()
	name := strings.TrimSpace("Chaperone sidecar CA " + opts.Session)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Chaperone"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(opts.Validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("ca certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca certificate: %w", err)
	}
	return &generation{cert: cert, key: key, pem: certPEM(der)}, nil
}

// Certificate returns the CA certificate that signs new leaves.
func (a *Authority) Certificate() *x509.Certificate {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cur.cert
}

// CertPEM returns the current CA certificate as PEM.
func (a *Authority) CertPEM() []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cur.pem
}

// Minted counts the leaves minted so far (cache misses).
func (a *Authority) Minted() uint64 { return a.minted.Load() }

// Leaf returns a certificate for name, a DNS name or an IP address, signed
// by the CA. Leaves are cached; concurrent calls for one name mint once.
func (a *Authority) Leaf(ctx context.Context, name string) (*tls.Certificate, error) {
	name, err := normalize(name)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	if el, ok := a.byName[name]; ok {
		e := el.Value.(*entry)
		if e.gen == a.cur && a.opts.Now().Before(e.cert.Leaf.NotAfter.Add(-renewBefore)) {
			a.lru.MoveToFront(el)
			a.mu.Unlock()
			return e.cert, nil
		}
		a.lru.Remove(el)
		delete(a.byName, name)
	}
	m, ok := a.inflight[name]
	if !ok {
		m = &mint{done: make(chan struct{})}
		a.inflight[name] = m
		gen := a.cur
		a.mu.Unlock()
		// The mint runs to completion whoever waits: a caller that gives
		// up must not fail the others.
		m.cert, m.err = a.mint(gen, name)
		a.mu.Lock()
		delete(a.inflight, name)
		// A leaf of a CA rotated away meanwhile is served to these callers
		// (it is still trusted) but not cached.
		if m.err == nil && gen == a.cur {
			a.add(name, m.cert, gen)
		}
		a.mu.Unlock()
		close(m.done)
		return m.cert, m.err
	}
	a.mu.Unlock()
	select {
	case <-m.done:
		return m.cert, m.err
	case <-ctx.Done():
		return nil, fmt.Errorf("leaf %s: %w", name, ctx.Err())
	}
}

// add caches cert under name, evicting the least recently used; a.mu held.
func (a *Authority) add(name string, cert *tls.Certificate, gen *generation) {
	a.byName[name] = a.lru.PushFront(&entry{name: name, cert: cert, gen: gen})
	for a.lru.Len() > a.opts.CacheSize {
		old := a.lru.Back()
		a.lru.Remove(old)
		delete(a.byName, old.Value.(*entry).name)
	}
}

// Cached reports how many leaves the cache holds.
func (a *Authority) Cached() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lru.Len()
}

func (a *Authority) mint(gen *generation, name string) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("leaf %s: key: %w", name, err)
	}
	serial, err := randSerial()
	if err != nil {
		return nil, err
	}
	now := a.opts.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    now.Add(-backdate),
		NotAfter:     minTime(now.Add(a.opts.Validity), gen.cert.NotAfter),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ip, err := netip.ParseAddr(name); err == nil {
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip.AsSlice())
	} else {
		tmpl.DNSNames = []string{name}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, gen.cert, key.Public(), gen.key)
	if err != nil {
		return nil, fmt.Errorf("leaf %s: %w", name, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("leaf %s: %w", name, err)
	}
	a.minted.Add(1)
	return &tls.Certificate{
		Certificate: [][]byte{der, gen.cert.Raw},
		PrivateKey:  key,
		Leaf:        leaf,
	}, nil
}

// normalize lowercases a DNS name and drops a trailing dot; IP addresses
// are put in canonical form (an IPv4-mapped IPv6 address becomes IPv4).
func normalize(name string) (string, error) {
	if ip, err := netip.ParseAddr(strings.Trim(name, "[]")); err == nil {
		return ip.Unmap().WithZone("").String(), nil
	}
	n := strings.ToLower(strings.TrimSuffix(name, "."))
	if n == "" || len(n) > 253 {
		return "", fmt.Errorf("%w: %q", ErrBadName, name)
	}
	for _, label := range strings.Split(n, ".") {
		if label == "" || len(label) > 63 {
			return "", fmt.Errorf("%w: %q", ErrBadName, name)
		}
		for _, c := range label {
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '_' {
				return "", fmt.Errorf("%w: %q", ErrBadName, name)
			}
		}
	}
	return n, nil
}

func randSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
