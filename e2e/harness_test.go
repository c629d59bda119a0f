package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/client"
	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/localserver"
	"github.com/chaperone-dev/chaperone/pkg/sandbox"
	"github.com/chaperone-dev/chaperone/pkg/store"
)

// binDir holds the binaries under test, set by TestMain.
var binDir string

func TestMain(m *testing.M) {
	sandbox.MaybeRunHelper()
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e: these tests create network namespaces and nftables rules and must run as root")
		return 1
	}
	binDir = os.Getenv("CHAPERONE_BIN")
	if binDir == "" {
		dir, err := os.MkdirTemp("", "chaperone-e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		build := exec.Command("go", "build", "-o", dir+"/", "github.com/chaperone-dev/chaperone/cmd/...")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: build binaries:", err)
			return 1
		}
		binDir = dir
	}
	return m.Run()
}

func bin(name string) string { return filepath.Join(binDir, name) }

// startServer runs chaperone-server on a temporary data dir for the test.
func startServer(t *testing.T) (*localserver.Server, *client.Client) {
	t.Helper()
	dir := t.TempDir()
	srv, err := localserver.Start(t.Context(), localserver.Options{Binary: bin("chaperone-server"), DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("stop server: %v", err)
		}
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(dir, "server.log")); err == nil {
				t.Logf("server log:\n%s", b)
			}
		}
	})
	cl, err := client.New(srv.Addrs.HTTP)
	if err != nil {
		t.Fatal(err)
	}
	return srv, cl
}

// waitEnded polls until the server stored the session's end, then returns
// its events in chain order.
func waitEnded(t *testing.T, cl *client.Client, id string) []*event.Event {
	t.Helper()
	ctx := t.Context()
	if _, err := cl.WaitEnded(ctx, id, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	var evs []*event.Event
	if err := cl.Events(ctx, id, 0, func(e *event.Event) error { evs = append(evs, e); return nil }); err != nil {
		t.Fatal(err)
	}
	return evs
}

func verifyChain(t *testing.T, cl *client.Client, id string) store.VerifyResult {
	t.Helper()
	v, err := cl.Verify(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if !v.OK {
		t.Fatalf("chain of %s broken: %+v", id, v.FirstBad)
	}
	return v
}

func dumpEvents(t *testing.T, evs []*event.Event) {
	t.Helper()
	var b strings.Builder
	for _, e := range evs {
		raw, _ := event.Encode(e)
		b.Write(raw)
		b.WriteByte('\n')
	}
	t.Logf("events:\n%s", b.String())
}
