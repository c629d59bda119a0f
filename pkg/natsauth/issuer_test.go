package natsauth_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/natsauth"
)

func TestLocalIssuerKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "issuer.pem")
	a, err := natsauth.LoadLocalIssuer(path, "chaperone")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file %v %v", fi, err)
	}
	// A second load uses the same key: a's tokens verify with b.
	b, err := natsauth.LoadLocalIssuer(path, "chaperone")
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := a.Mint("s1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	v, err := b.Verifier(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Token(t.Context(), tok); err != nil {
		t.Fatalf("token of the first load with the second: %v", err)
	}
	// Another audience does not accept it.
	c, err := natsauth.LoadLocalIssuer(path, "other")
	if err != nil {
		t.Fatal(err)
	}
	vc, _ := c.Verifier(t.Context())
	if _, err := vc.Token(t.Context(), tok); err == nil {
		t.Fatal("token accepted for another audience")
	}

	for name, content := range map[string]string{"garbage": "not pem", "wrong block": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"} {
		bad := filepath.Join(t.TempDir(), "issuer.pem")
		if err := os.WriteFile(bad, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := natsauth.LoadLocalIssuer(bad, "chaperone"); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("%s: %v, want an error naming the file", name, err)
		}
	}
}
