package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"
)

// Files serves a certificate that something else keeps in a directory as
// tls.crt and tls.key (cert-manager's Secret, mounted), reloading it when
// the files change; it never writes.
type Files struct {
	dir string
	log *slog.Logger

	mu   sync.RWMutex
	cert *tls.Certificate
	raw  []byte
}

// NewFiles returns a Files for dir; call Load (or Run) before serving.
func NewFiles(dir string, log *slog.Logger) *Files {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Files{dir: dir, log: log}
}

// Load reads the pair if it changed since the last Load and reports
// whether it did. A broken pair keeps the previous one in service.
func (f *Files) Load() (bool, error) {
	certPEM := readFile(filepath.Join(f.dir, CertFile))
	keyPEM := readFile(filepath.Join(f.dir, KeyFile))
	raw := append(append([]byte(nil), certPEM...), keyPEM...)
	f.mu.RLock()
	same := f.cert != nil && bytes.Equal(raw, f.raw)
	f.mu.RUnlock()
	if same {
		return false, nil
	}
	if len(certPEM) == 0 || len(keyPEM) == 0 {
		return false, fmt.Errorf("serving certificate: %s or %s missing in %s", CertFile, KeyFile, f.dir)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return false, fmt.Errorf("serving certificate in %s: %w", f.dir, err)
	}
	f.mu.Lock()
	f.cert, f.raw = &pair, raw
	f.mu.Unlock()
	f.log.Info("webhook serving certificate loaded", "dir", f.dir, "not_after", pair.Leaf.NotAfter)
	return true, nil
}

// GetCertificate serves the current certificate; use it as
// tls.Config.GetCertificate.
func (f *Files) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.cert == nil {
		return nil, errors.New("no serving certificate yet")
	}
	return f.cert, nil
}

// Run calls Load every interval until ctx ends, logging errors.
func (f *Files) Run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if _, err := f.Load(); err != nil {
			f.log.Error("webhook certificate reload", "error", err)
		}
	}
}
