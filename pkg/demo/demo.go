package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/client"
	"github.com/chaperone-dev/chaperone/pkg/localserver"
	"github.com/chaperone-dev/chaperone/pkg/runner"
	"github.com/chaperone-dev/chaperone/pkg/sandbox"
)

// demoToken is the bearer token the scripted agent sends. The demo checks
// that it never reached the server's database.
const demoToken = "chp_demo_4f9a2c7e1b8d6053" //nolint:gosec // a demo value; the demo proves it is never stored

// script is the scripted agent: real curl and a raw TCP connection from bash.
const script = `set -eu
say() { printf '\n\033[1magent:\033[0m %s\n' "$*"; }
say "listing items"
curl -sS --fail "http://$DEMO_HTTP/api/items"
say "adding an item"
curl -sS --fail -X POST -H 'Content-Type: application/json' -d '{"name":"fix flaky test"}' "http://$DEMO_HTTP/api/items"
say "fetching the deploy key with a bearer token"
curl -sS --fail -H "Authorization: Bearer $DEMO_TOKEN" "http://$DEMO_HTTP/api/deploy-key"
say "one raw TCP exchange"
exec 3<>"/dev/tcp/${DEMO_ECHO%:*}/${DEMO_ECHO##*:}"
echo "hello from the agent" >&3
read -r line <&3
echo "$line"
exec 3<&-
`

// Options configure Run.
type Options struct {
	// BinDir holds the chaperone binaries; empty uses the running
	// executable's directory.
	BinDir string
	// Speed is the replay speed; default 4.
	Speed  float64
	Stdout io.Writer
	Stderr io.Writer
	Logger *slog.Logger
}

// Run performs the demo and leaves nothing running.
func Run(ctx context.Context, o Options) error {
	if err := o.defaults(); err != nil {
		return err
	}
	step := func(format string, a ...any) {
		fmt.Fprintf(o.Stdout, "\n\033[1;36m==> "+format+"\033[0m\n", a...)
	}
	dataDir, err := os.MkdirTemp("", "chaperone-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dataDir)

	step("starting chaperone-server (embedded NATS JetStream + SQLite in %s)", dataDir)
	srv, err := localserver.Start(ctx, localserver.Options{Binary: filepath.Join(o.BinDir, "chaperone-server"), DataDir: dataDir})
	if err != nil {
		return err
	}
	defer func() { _ = srv.Stop() }()
	fmt.Fprintf(o.Stdout, "    API %s, NATS %s\n", srv.Addrs.HTTP, srv.Addrs.NATS)

	sb, err := sandbox.New(ctx, sandbox.Options{Logger: o.Logger})
	if err != nil {
		return fmt.Errorf("network namespace: %w", err)
	}
	defer sb.Close()
	tgt, err := startTarget(ctx, sb.HostIP())
	if err != nil {
		return err
	}
	defer tgt.close(context.WithoutCancel(ctx))
	step("target service: HTTP on %s, TCP echo on %s", tgt.httpAddr(), tgt.echoAddr())

	step("running the scripted agent under chaperonectl run (curl ×3, one raw TCP connection)")
	res, err := runner.Run(ctx, runner.Options{
		Command:     []string{"/bin/bash", "-c", script},
		Env:         []string{"DEMO_HTTP=" + tgt.httpAddr(), "DEMO_ECHO=" + tgt.echoAddr(), "DEMO_TOKEN=" + demoToken},
		NATSURL:     srv.Addrs.NATS,
		Token:       srv.WorkloadToken,
		SidecarPath: filepath.Join(o.BinDir, "chaperone-sidecar"),
		User:        runner.CurrentUser(),
		Sandbox:     sb,
		Stdout:      o.Stdout,
		Stderr:      o.Stderr,
		Logger:      o.Logger,
	})
	if err != nil {
		return fmt.Errorf("agent run: %w", err)
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("scripted agent exited with status %d", res.ExitCode)
	}
	fmt.Fprintf(o.Stderr, "\nsession: %s\n", res.Session)

	cl, err := client.New(srv.Addrs.HTTP)
	if err != nil {
		return err
	}
	if _, err := cl.WaitEnded(ctx, res.Session, 30*time.Second); err != nil {
		return err
	}

	step("replaying the session: chaperonectl sessions replay %s --speed %g", res.Session, o.Speed)
	ctl := exec.CommandContext(ctx, filepath.Join(o.BinDir, "chaperonectl"), "--server", srv.Addrs.HTTP,
		"sessions", "replay", res.Session, "--speed", fmt.Sprint(o.Speed))
	ctl.Stdout, ctl.Stderr = o.Stdout, o.Stderr
	if err := ctl.Run(); err != nil {
		return fmt.Errorf("replay: %w", err)
	}

	step("verifying the session's hash chain")
	v, err := cl.Verify(ctx, res.Session)
	if err != nil {
		return err
	}
	if !v.OK {
		return fmt.Errorf("hash chain broken at event %d: %s", v.FirstBad.Index, v.FirstBad.Reason)
	}
	fmt.Fprintf(o.Stdout, "    %d events, chain intact, head %s\n", v.Events, v.Head)

	step("checking that the bearer token never reached the server")
	if err := srv.Stop(); err != nil {
		return err
	}
	leaked, err := grepTree(dataDir, []byte(demoToken))
	if err != nil {
		return err
	}
	if leaked != "" {
		return fmt.Errorf("the demo token was found in %s", leaked)
	}
	fmt.Fprintf(o.Stdout, "    not in the SQLite database nor the JetStream store: it was recorded as [REDACTED]\n")
	step("done; nothing is left running")
	return nil
}

func (o *Options) defaults() error {
	if o.BinDir == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		o.BinDir = filepath.Dir(exe)
	}
	if o.Speed == 0 {
		o.Speed = 4
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if os.Geteuid() != 0 {
		return errors.New("the demo creates a network namespace and nftables rules: run it as root")
	}
	return nil
}

// grepTree returns the first file under dir that contains needle.
func grepTree(dir string, needle []byte) (string, error) {
	var found string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || found != "" {
			return err
		}
		b, err := os.ReadFile(path) //nolint:gosec // walks the demo's own temporary directory
		if err != nil {
			return err
		}
		if bytes.Contains(b, needle) && !strings.HasSuffix(path, "server.log") {
			found = path
		}
		return nil
	})
	return found, err
}
