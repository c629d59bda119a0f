package kube

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Versions of the binaries that build.sh builds; they must match
// tools/go.mod (a test checks).
const (
	KubeVersion = "v1.37.2"
	EtcdVersion = "v3.7.0"
)

// Environment variables read by Require.
const (
	// EnvBin names a directory holding the three binaries; it overrides the
	// cache lookup and is trusted as is.
	EnvBin = "CHAPERONE_KUBE_BIN"
	// EnvCache is the cache root, /var/cache/chaperone when unset; build.sh
	// reads the same variable.
	EnvCache = "CHAPERONE_CACHE"
)

// DefaultCache is the cache root when EnvCache is unset.
const DefaultCache = "/var/cache/chaperone"

// binaries are the programs the bed runs.
var binaries = []string{"etcd", "kube-apiserver", "kube-controller-manager"}

// CacheBinDir returns where build.sh puts the binaries:
// $CHAPERONE_CACHE/kube-<KubeVersion>-etcd-<EtcdVersion>/bin.
func CacheBinDir() string {
	root := os.Getenv(EnvCache)
	if root == "" {
		root = DefaultCache
	}
	return filepath.Join(root, "kube-"+KubeVersion+"-etcd-"+EtcdVersion, "bin")
}

// FindBinDir returns the directory with the test bed's binaries: $EnvBin
// if set, else CacheBinDir. It fails with the command that builds them when
// one is missing or, when this package's source is at hand, when the build
// stamp does not match tools/go.sum.
func FindBinDir() (string, error) {
	dir, fromEnv := os.Getenv(EnvBin), true
	if dir == "" {
		dir, fromEnv = CacheBinDir(), false
	}
	build := buildCommand()
	for _, b := range binaries {
		//nolint:gosec // the developer names this directory on purpose
		if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || fi.Mode()&0o111 == 0 {
			return "", fmt.Errorf("kube test bed: %s missing in %s; build it (10-25 min the first time, cached after) with:\n\t%s",
				b, dir, build)
		}
	}
	if fromEnv {
		return dir, nil
	}
	if sum, ok := toolsSum(); ok {
		stamp, err := os.ReadFile(filepath.Join(dir, ".stamp")) //nolint:gosec // the cache directory, by design
		if err != nil || strings.TrimSpace(string(stamp)) != sum {
			return "", fmt.Errorf("kube test bed: binaries in %s were built from another e2e/kube/tools/go.sum; rebuild with:\n\t%s",
				dir, build)
		}
	}
	return dir, nil
}

// Require returns the directory with the test bed's binaries or fails the
// test with the command that builds them. It never skips.
func Require(t testing.TB) string {
	t.Helper()
	dir, err := FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// StartTest starts a cluster for t in a directory under t.TempDir, logging
// through t.Log, and stops it when the test ends; when the test failed, it
// logs the tail of each component's log first.
func StartTest(t testing.TB) *Cluster {
	t.Helper()
	bin := Require(t)
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	dir := t.TempDir()
	c, err := Start(t.Context(), Options{BinDir: bin, Dir: dir, Logger: logger})
	if err != nil {
		logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
		for _, path := range logs {
			t.Logf("%s (tail):\n%s", filepath.Base(path), tail(path, 4<<10))
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for name, path := range c.Logs() {
				t.Logf("%s log (tail):\n%s", name, tail(path, 4<<10))
			}
		}
		if err := c.Stop(); err != nil {
			t.Errorf("stop cluster: %v", err)
		}
	})
	return c
}

// testWriter sends slog output to t.Log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// tail returns the last n bytes of the file at path.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		_, _ = f.Seek(fi.Size()-n, 0)
	}
	b := make([]byte, n)
	m, _ := f.Read(b)
	return string(b[:m])
}

// sourceDir is this package's directory when the source is at hand (tests
// run from the repository), else "".
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

// buildCommand is the shell command that builds the binaries.
func buildCommand() string {
	script := "e2e/kube/build.sh # from the repository root"
	if dir := sourceDir(); dir != "" {
		script = filepath.Join(dir, "build.sh")
	}
	if root := os.Getenv(EnvCache); root != "" {
		return EnvCache + "=" + root + " bash " + script
	}
	return "bash " + script
}

// toolsSum returns the sha256 of tools/go.sum, as build.sh records it.
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
