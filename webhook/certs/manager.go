package certs

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// Files in Options.Dir.
const (
	CAFile       = "ca.crt"
	CAKeyFile    = "ca.key"
	BundleFile   = "ca-bundle.crt"
	CertFile     = "tls.crt"
	KeyFile      = "tls.key"
	caCommonName = "chaperone-webhook-ca"
)

// Defaults for Options.
const (
	DefaultCAValidity   = 365 * 24 * time.Hour
	DefaultCertValidity = 90 * 24 * time.Hour
)

// Options configure a Manager.
type Options struct {
	// Dir holds the CA and serving certificate; created if missing.
	Dir string
	// DNSNames and IPs of the serving certificate (the webhook Service's
	// names, 127.0.0.1 in tests).
	DNSNames []string
	IPs      []net.IP
	// CAValidity and CertValidity default to a year and 90 days; each is
	// renewed once less than a third of its validity is left.
	CAValidity, CertValidity time.Duration
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// Logger; nil discards.
	Logger *slog.Logger
	// Shared, when set, keeps the files where the other replicas find
	// them (a SecretStore): Ensure pulls before and pushes after renewing.
	Shared Shared
}

// Manager owns the CA and serving certificate.
type Manager struct {
	opts Options

	mu     sync.RWMutex
	cert   *tls.Certificate
	leaf   *x509.Certificate
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	bundle []byte
}

// ErrNoNames is returned by New when the certificate would have no names.
var ErrNoNames = errors.New("serving certificate needs a DNS name or IP")

// New returns a Manager; call Ensure (or Run) before serving.
func New(opts Options) (*Manager, error) {
	if opts.Dir == "" {
		return nil, errors.New("cert dir is required")
	}
	if len(opts.DNSNames) == 0 && len(opts.IPs) == 0 {
		return nil, ErrNoNames
	}
	if opts.CAValidity <= 0 {
		opts.CAValidity = DefaultCAValidity
	}
	if opts.CertValidity <= 0 {
		opts.CertValidity = DefaultCertValidity
	}
	if opts.CertValidity > opts.CAValidity {
		return nil, errors.New("certificate validity exceeds the CA's")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Manager{opts: opts}, nil
}

// GetCertificate serves the current certificate; use it as
// tls.Config.GetCertificate.
func (m *Manager) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.cert == nil {
		return nil, errors.New("no serving certificate yet")
	}
	return m.cert, nil
}

// CABundle returns the PEM roots clients must trust: the current CA and,
// during a CA rollover, the previous one while it is still valid.
func (m *Manager) CABundle() []byte {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return slices.Clone(m.bundle)
}

// Leaf returns the current serving certificate.
func (m *Manager) Leaf() *x509.Certificate {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.leaf
}

// due reports whether c has less than a third of its validity left at now.
func due(c *x509.Certificate, now time.Time) bool {
	life := c.NotAfter.Sub(c.NotBefore)
	return now.After(c.NotAfter.Add(-life/3)) || now.Before(c.NotBefore)
}

// Ensure loads the files from Dir (picking up a copy written by someone
// else), renews what is due and writes the result back. It reports whether
// the CA bundle changed, in which case the webhook configuration needs it.
//
// With Options.Shared, the shared copy is pulled first, and whatever was
// renewed is pushed; when another replica pushed in between, its copy is
// pulled and used instead.
func (m *Manager) Ensure(ctx context.Context) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := os.MkdirAll(m.opts.Dir, 0o700); err != nil {
		return false, fmt.Errorf("cert dir: %w", err)
	}
	oldBundle := m.bundle
	if m.opts.Shared == nil {
		if _, err := m.ensureLocal(); err != nil {
			return false, err
		}
		return !bytes.Equal(oldBundle, m.bundle), nil
	}
	const attempts = 3
	for attempt := 1; ; attempt++ {
		complete, err := m.opts.Shared.Pull(ctx, m.opts.Dir)
		if err != nil {
			return false, err
		}
		created, err := m.ensureLocal()
		if err != nil {
			return false, err
		}
		if !created && complete {
			break
		}
		err = m.opts.Shared.Push(ctx, m.opts.Dir)
		if err == nil {
			break
		}
		if !IsConflict(err) || attempt == attempts {
			return false, err
		}
		m.opts.Logger.Info("webhook certificates changed by another replica, using theirs", "error", err)
	}
	return !bytes.Equal(oldBundle, m.bundle), nil
}

// ensureLocal is Ensure on the directory alone; it reports whether it
// created a CA or serving certificate.
func (m *Manager) ensureLocal() (bool, error) {
	now := m.opts.Now()

	created := false
	ca, caKey, err := m.loadCA()
	if err != nil {
		m.opts.Logger.Warn("webhook CA unusable, creating a new one", "error", err)
	}
	bundle := readFile(filepath.Join(m.opts.Dir, BundleFile))
	newCA := ca == nil || due(ca, now)
	if newCA {
		prev := ca
		ca, caKey, err = m.createCA(now)
		if err != nil {
			return false, err
		}
		created = true
		bundle = encodeCert(ca.Raw)
		if prev != nil && now.Before(prev.NotAfter) {
			// Clients keep trusting the old CA until the new bundle reaches them.
			bundle = append(bundle, encodeCert(prev.Raw)...)
		}
		m.opts.Logger.Info("webhook CA created", "not_after", ca.NotAfter)
	}
	if len(bundle) == 0 || !bytes.Contains(bundle, encodeCert(ca.Raw)) {
		bundle = encodeCert(ca.Raw)
	}

	cert, leaf, err := m.loadCert(ca)
	if err != nil || newCA || due(leaf, now) || !m.covers(leaf) {
		cert, leaf, err = m.createCert(now, ca, caKey)
		if err != nil {
			return false, err
		}
		created = true
		m.opts.Logger.Info("webhook serving certificate issued", "not_after", leaf.NotAfter, "serial", leaf.SerialNumber.String())
	}
	if err := writeFile(filepath.Join(m.opts.Dir, BundleFile), bundle, 0o644); err != nil {
		return false, err
	}
	m.ca, m.caKey, m.cert, m.leaf, m.bundle = ca, caKey, cert, leaf, bundle
	return created, nil
}

// covers reports whether leaf carries every configured name.
func (m *Manager) covers(leaf *x509.Certificate) bool {
	for _, n := range m.opts.DNSNames {
		if !slices.Contains(leaf.DNSNames, n) {
			return false
		}
	}
	for _, ip := range m.opts.IPs {
		if !slices.ContainsFunc(leaf.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}

func (m *Manager) loadCA() (*x509.Certificate, *ecdsa.PrivateKey, error) {
	pair, err := tls.LoadX509KeyPair(filepath.Join(m.opts.Dir, CAFile), filepath.Join(m.opts.Dir, CAKeyFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("load CA: %w", err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || !pair.Leaf.IsCA {
		return nil, nil, errors.New("load CA: not an ECDSA CA")
	}
	return pair.Leaf, key, nil
}

func (m *Manager) loadCert(ca *x509.Certificate) (*tls.Certificate, *x509.Certificate, error) {
	pair, err := tls.LoadX509KeyPair(filepath.Join(m.opts.Dir, CertFile), filepath.Join(m.opts.Dir, KeyFile))
	if err != nil {
		return nil, nil, fmt.Errorf("load serving certificate: %w", err)
	}
	if err := pair.Leaf.CheckSignatureFrom(ca); err != nil {
		return nil, nil, fmt.Errorf("serving certificate not from the CA: %w", err)
	}
	return &pair, pair.Leaf, nil
}

func (m *Manager) createCA(now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: caCommonName},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(m.opts.CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create CA: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse CA: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	if err := writeFile(filepath.Join(m.opts.Dir, CAKeyFile), keyPEM, 0o600); err != nil {
		return nil, nil, err
	}
	if err := writeFile(filepath.Join(m.opts.Dir, CAFile), encodeCert(der), 0o644); err != nil {
		return nil, nil, err
	}
	return ca, key, nil
}

func (m *Manager) createCert(now time.Time, ca *x509.Certificate, caKey *ecdsa.PrivateKey) (*tls.Certificate, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("serving key: %w", err)
	}
	cn := "chaperone-webhook"
	if len(m.opts.DNSNames) > 0 {
		cn = m.opts.DNSNames[0]
	}
	notAfter := now.Add(m.opts.CertValidity)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     m.opts.DNSNames,
		IPAddresses:  m.opts.IPs,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("create serving certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	certPEM := encodeCert(der)
	// Key first: a reader that sees the new certificate finds its key.
	if err := writeFile(filepath.Join(m.opts.Dir, KeyFile), keyPEM, 0o600); err != nil {
		return nil, nil, err
	}
	if err := writeFile(filepath.Join(m.opts.Dir, CertFile), certPEM, 0o644); err != nil {
		return nil, nil, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("serving key pair: %w", err)
	}
	return &pair, pair.Leaf, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func readFile(path string) []byte {
	b, _ := os.ReadFile(path)
	return b
}

// writeFile replaces path atomically.
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
