package certs

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func pemCerts(t *testing.T, b []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}

func TestWriteTrust(t *testing.T) {
	a := newAuthority(t, Options{Session: "s"})
	roots, err := SystemRootsPEM()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "trust")
	if err := WriteTrust(dir, a.CertPEM(), roots); err != nil {
		t.Fatal(err)
	}
	// Again: the files are replaced, not appended to.
	if err := WriteTrust(dir, a.CertPEM(), roots); err != nil {
		t.Fatal(err)
	}
	caB, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		t.Fatal(err)
	}
	if ca := pemCerts(t, caB); len(ca) != 1 || !ca[0].Equal(a.Certificate()) {
		t.Fatalf("%s holds %d certificates, want only the CA", CAFile, len(ca))
	}
	bundleB, err := os.ReadFile(filepath.Join(dir, BundleFile))
	if err != nil {
		t.Fatal(err)
	}
	bundle := pemCerts(t, bundleB)
	sys := pemCerts(t, roots)
	if len(sys) == 0 {
		t.Fatal("no system roots")
	}
	if len(bundle) != len(sys)+1 {
		t.Fatalf("bundle holds %d certificates, want %d system roots + the CA", len(bundle), len(sys))
	}
	if !bundle[len(bundle)-1].Equal(a.Certificate()) {
		t.Error("the CA is not in the bundle")
	}
	for _, f := range []string{CAFile, BundleFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o644 {
			t.Errorf("%s mode %v, want 0644", f, fi.Mode().Perm())
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("trust dir holds %d files, want 2", len(ents))
	}
	// The CA key is in no file.
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		if strings.Contains(string(b), "PRIVATE KEY") {
			t.Errorf("%s holds a private key", e.Name())
		}
	}
}

func TestEnv(t *testing.T) {
	env := Env("/trust")
	want := []string{
		"SSL_CERT_FILE=/trust/bundle.crt",
		"NODE_EXTRA_CA_CERTS=/trust/ca.crt",
		"REQUESTS_CA_BUNDLE=/trust/bundle.crt",
		"CURL_CA_BUNDLE=/trust/bundle.crt",
		"GIT_SSL_CAINFO=/trust/bundle.crt",
	}
	if !slices.Equal(env, want) {
		t.Errorf("Env = %q, want %q", env, want)
	}
}

func TestRootPool(t *testing.T) {
	a := newAuthority(t, Options{})
	f := filepath.Join(t.TempDir(), "extra.crt")
	if err := os.WriteFile(f, a.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	pool, err := RootPool(f)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := a.Leaf(t.Context(), "svc.test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Leaf.Verify(x509.VerifyOptions{DNSName: "svc.test", Roots: pool}); err != nil {
		t.Errorf("extra root not trusted: %v", err)
	}
	sys, err := RootPool()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Leaf.Verify(x509.VerifyOptions{DNSName: "svc.test", Roots: sys}); err == nil {
		t.Error("a leaf of an unknown CA verifies against the system roots")
	}
	bad := filepath.Join(t.TempDir(), "bad.crt")
	_ = os.WriteFile(bad, []byte("not pem"), 0o600)
	if _, err := RootPool(bad); err == nil {
		t.Error("RootPool took a file without certificates")
	}
	if _, err := RootPool(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("RootPool took a missing file")
	}
}
