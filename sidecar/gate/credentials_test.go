package gate

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func jwtFor(sub string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(`{"sub":"`+sub+`"}`)) + ".c2ln"
}

// TestCredentialsRotation swaps the token file the way the kubelet does
// (a new file renamed over the link) and checks that the new token is
// used once the file changed, and the old one while it is away.
func TestCredentialsRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "token")
	write := func(tok string) {
		tmp := filepath.Join(dir, "token.tmp")
		if err := os.WriteFile(tmp, []byte(tok), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := NewCredentials("placeholder-1", path, ""); !errors.Is(err, ErrNoToken) {
		t.Fatalf("missing file: err = %v", err)
	}
	if _, err := NewCredentials("short", path, ""); err == nil {
		t.Fatal("a short placeholder was accepted")
	}
	write(jwtFor("system:serviceaccount:a:one"))
	c, err := NewCredentials("placeholder-1", path, "fallback")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c.now = func() time.Time { return now }
	tok, as, err := c.Token()
	if err != nil || tok != jwtFor("system:serviceaccount:a:one") || as != "system:serviceaccount:a:one" {
		t.Fatalf("Token = %q %q %v", tok, as, err)
	}
	write("opaque-token-two")
	if tok, _, _ := c.Token(); tok != jwtFor("system:serviceaccount:a:one") {
		t.Errorf("re-read before recheckEvery")
	}
	now = now.Add(2 * recheckEvery)
	if tok, as, _ := c.Token(); tok != "opaque-token-two" || as != "fallback" {
		t.Errorf("after rotation: %q as %q", tok, as)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * recheckEvery)
	if tok, _, err := c.Token(); tok != "opaque-token-two" || err != nil {
		t.Errorf("while the file is away: %q %v", tok, err)
	}
	if h, ok := c.carries(map[string]string{"x-api-key": "k placeholder-1"}); !ok || h != "X-Api-Key" {
		t.Errorf("carries = %q %v", h, ok)
	}
}
