package certs

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Trust files written to the trust directory.
const (
	// DefaultTrustDir is where the sidecar writes the trust files in a pod.
	DefaultTrustDir = "/var/run/chaperone/trust"
	// CAFile holds only the sidecar's CA certificates: the current one and,
	// for a while after a rotation, the one it replaced (TrustPEM).
	CAFile = "ca.crt"
	// BundleFile holds the system roots followed by the sidecar's CA.
	BundleFile = "bundle.crt"
)

// Environment variables that point agent tools at the trust files.
const (
	EnvSSLCertFile      = "SSL_CERT_FILE"       // OpenSSL, Go, Python ssl, Ruby
	EnvNodeExtraCACerts = "NODE_EXTRA_CA_CERTS" // Node.js appends it to its own roots: CA only
	EnvRequestsCABundle = "REQUESTS_CA_BUNDLE"  // Python requests
	EnvCurlCABundle     = "CURL_CA_BUNDLE"      // curl
	EnvGitSSLCAInfo     = "GIT_SSL_CAINFO"      // git over https
)

// Env returns the NAME=value entries that make agent tools trust the
// sidecar, given the trust directory as the agent sees it.
func Env(dir string) []string {
	bundle := filepath.Join(dir, BundleFile)
	return []string{
		EnvSSLCertFile + "=" + bundle,
		EnvNodeExtraCACerts + "=" + filepath.Join(dir, CAFile),
		EnvRequestsCABundle + "=" + bundle,
		EnvCurlCABundle + "=" + bundle,
		EnvGitSSLCAInfo + "=" + bundle,
	}
}

// SystemRootFiles are the usual places of the system's PEM root bundle,
// Debian's first; SystemRootsPEM reads the first that exists.
var SystemRootFiles = []string{
	"/etc/ssl/certs/ca-certificates.crt",                // Debian, Ubuntu, Alpine
	"/etc/pki/tls/certs/ca-bundle.crt",                  // Fedora, RHEL
	"/etc/ssl/ca-bundle.pem",                            // openSUSE
	"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", // CentOS, RHEL 7
	"/etc/ssl/cert.pem",                                 // Alpine, macOS
}

// ErrNoSystemRoots is returned by SystemRootsPEM when no bundle exists.
var ErrNoSystemRoots = errors.New("no system root bundle found")

// SystemRootsPEM returns the system's root certificates as PEM: the file
// named by $SSL_CERT_FILE of this process if set, else the first of
// SystemRootFiles that exists.
func SystemRootsPEM() ([]byte, error) {
	files := SystemRootFiles
	if f := os.Getenv(EnvSSLCertFile); f != "" {
		files = []string{f}
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("system roots: %w", err)
		}
		return b, nil
	}
	return nil, ErrNoSystemRoots
}

// RootPool returns the system roots plus the certificates in the PEM
// files extra (the roots the sidecar trusts upstream). Each extra file
// must hold at least one certificate.
func RootPool(extra ...string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	for _, f := range extra {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("extra ca: %w", err)
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("extra ca %s: no PEM certificate in it", f)
		}
	}
	return pool, nil
}

// WriteTrust writes CAFile (caPEM, e.g. Authority.TrustPEM) and BundleFile
// (roots, then caPEM) to
// dir, creating it if needed, world-readable so that agent containers
// running as any user can read them. Each file is replaced atomically.
func WriteTrust(dir string, caPEM, roots []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("trust dir: %w", err)
	}
	var bundle bytes.Buffer
	bundle.Write(roots)
	if len(roots) > 0 && roots[len(roots)-1] != '\n' {
		bundle.WriteByte('\n')
	}
	bundle.WriteString("# Chaperone sidecar CA\n")
	bundle.Write(caPEM)
	if err := writeFile(filepath.Join(dir, CAFile), caPEM); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, BundleFile), bundle.Bytes())
}

func writeFile(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(f.Name()) // a no-op after the rename
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(0o644); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// certPEM encodes one DER certificate as PEM.
func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
