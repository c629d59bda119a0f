// Command chaperonectl is the command-line client of chaperone-server:
// it lists, shows, replays, exports and verifies recorded sessions, runs a
// command behind a real sidecar (run), and shows the whole data path on one
// machine (demo).
//
// Commands are built in root.go (newRootCmd); the sessions commands live in
// sessions.go. To add a top-level command (run, demo), write a
// func(*globals) *cobra.Command and pass it to execute below.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/chaperone-dev/chaperone/pkg/sandbox"
)

func main() {
	sandbox.MaybeRunHelper()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := execute(ctx, os.Args[1:], streams{out: os.Stdout, err: os.Stderr}, os.Getenv, newRunCmd, newDemoCmd)
	stop()
	os.Exit(code)
}
