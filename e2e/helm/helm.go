package helm

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Version is the helm release build.sh builds; it must match tools/go.mod
// (a test checks).
const Version = "v3.22.0"

// Environment variables read by Find.
const (
	// EnvBin names a helm binary to use as is.
	EnvBin = "CHAPERONE_HELM"
	// EnvCache is the cache root, /var/cache/chaperone when unset.
	EnvCache = "CHAPERONE_CACHE"
)

// CacheBin is where build.sh puts helm:
// $CHAPERONE_CACHE/helm-<Version>/bin/helm.
func CacheBin() string {
	root := os.Getenv(EnvCache)
	if root == "" {
		root = "/var/cache/chaperone"
	}
	return filepath.Join(root, "helm-"+Version, "bin", "helm")
}

// Find returns the helm binary: $CHAPERONE_HELM if set, else CacheBin. It
// fails with the command that builds it when it is missing or, with this
// package's source at hand, built from another tools/go.sum.
func Find() (string, error) {
	if p := os.Getenv(EnvBin); p != "" {
		return p, nil
	}
	p := CacheBin()
	build := "bash e2e/helm/build.sh # from the repository root"
	if dir := sourceDir(); dir != "" {
		build = "bash " + filepath.Join(dir, "build.sh")
	}
	if root := os.Getenv(EnvCache); root != "" {
		build = EnvCache + "=" + root + " " + build
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode()&0o111 == 0 {
		return "", fmt.Errorf("helm %s missing at %s; build it (a few minutes the first time, cached after) with:\n\t%s", Version, p, build)
	}
	if want, ok := toolsSum(); ok {
		stamp, err := os.ReadFile(filepath.Join(filepath.Dir(p), ".stamp")) //nolint:gosec // the cache directory, by design
		if err != nil || strings.TrimSpace(string(stamp)) != want {
			return "", fmt.Errorf("helm at %s was built from another e2e/helm/tools/go.sum; rebuild with:\n\t%s", p, build)
		}
	}
	return p, nil
}

// Require returns the helm binary or fails the test with the command that
// builds it. It never skips.
func Require(t testing.TB) string {
	t.Helper()
	p, err := Find()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// sourceDir is this package's directory when the source is at hand.
func sourceDir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok || !filepath.IsAbs(file) {
		return ""
	}
	dir := filepath.Dir(file)
	if _, err := os.Stat(filepath.Join(dir, "build.sh")); err != nil {
		return ""
	}
	return dir
}

func toolsSum() (string, bool) {
	dir := sourceDir()
	if dir == "" {
		return "", false
	}
	b, err := os.ReadFile(filepath.Join(dir, "tools", "go.sum"))
	if err != nil {
		return "", false
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), true
}
