package helm

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestVersionMatchesTools: Version is what tools/go.mod pins, and the
// cached binary reports it.
func TestVersionMatchesTools(t *testing.T) {
	b, err := os.ReadFile("tools/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "helm.sh/helm/v3 "+Version+"\n") {
		t.Fatalf("tools/go.mod does not require helm.sh/helm/v3 %s", Version)
	}
	out, err := exec.Command(Require(t), "version", "--short").CombinedOutput() //nolint:gosec // the cached helm
	if err != nil {
		t.Fatalf("helm version: %v\n%s", err, out)
	}
	if !strings.HasPrefix(strings.TrimSpace(string(out)), Version) {
		t.Fatalf("helm version %q, want %s", out, Version)
	}
}
