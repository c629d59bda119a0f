// Command chaperone-sidecar is Chaperone's pod sidecar: `proxy` records and
// relays the agent's outbound connections; `init` installs the nftables
// rules that redirect them to the proxy.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage: chaperone-sidecar <command> [flags]

commands:
  proxy   run the recording proxy (the sidecar container)
  init    install the traffic redirect rules (the init container)
  wait    return once the proxy is ready (classic sidecar mode's postStart hook)

Run 'chaperone-sidecar <command> --help' for the command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaperone-sidecar:", err)
		os.Exit(1)
	}
}

// errUsage is returned for a missing or unknown command.
var errUsage = errors.New("usage")

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: no command", errUsage)
	}
	switch args[0] {
	case "proxy":
		return runProxy(ctx, args[1:], stdout, stderr)
	case "init":
		return runInit(ctx, args[1:], stdout)
	case "wait":
		return runWait(ctx, args[1:], stdout)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: unknown command %q", errUsage, args[0])
	}
}
