// Command benchreport measures the sidecar's data path side by side with
// its peers, in one run and with one load generator (wrk): straight to a
// local upstream, through nginx as a keep-alive reverse proxy, through a
// Go relay that copies bytes and nothing else (the floor of any Go proxy on
// the machine; HTTP case only), and through
// chaperone-sidecar with full recording on (redirect rules, original
// destination, HTTP/1.1 recorder, spool, JetStream, server ingest). It
// prints p50/p99 latency, requests/s and the sidecar's RSS, with ratios.
// Every run is repeated --rounds times, the paths interleaved within each
// round, and the report shows each path's median round and the spread.
//
// `make bench` runs it; it needs root, nginx and wrk (Debian packages
// nginx-light and wrk).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/sandbox"
)

type config struct {
	binDir   string
	duration time.Duration
	rounds   int
	conns    []int
	tls      bool
	http     bool
}

func main() {
	sandbox.MaybeRunHelper()
	if len(os.Args) > 1 && os.Args[1] == goRelayArg {
		// It relays until it is killed; it returns only on an error.
		fmt.Fprintln(os.Stderr, "benchreport go-relay:", runGoRelay(os.Args[2:]))
		os.Exit(1)
	}
	var cfg config
	flag.StringVar(&cfg.binDir, "bin", "bin", "directory with the chaperone binaries")
	flag.DurationVar(&cfg.duration, "duration", 5*time.Second, "length of each wrk run")
	flag.IntVar(&cfg.rounds, "rounds", 3, "how many times every run is repeated (paths interleaved; the report shows the median round)")
	flag.BoolVar(&cfg.tls, "tls", true, "run the HTTPS case")
	flag.BoolVar(&cfg.http, "http", true, "run the plain HTTP case")
	flag.Parse()
	cfg.conns = []int{1, 16}
	if err := cfg.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := run(ctx, cfg, log); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

func (c *config) validate() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces and nftables)")
	}
	for _, tool := range []string{"nginx", "wrk"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found: apt-get install nginx-light wrk", tool)
		}
	}
	abs, err := filepath.Abs(c.binDir)
	if err != nil {
		return err
	}
	c.binDir = abs
	for _, b := range []string{"chaperone-server", "chaperone-sidecar"} {
		if _, err := os.Stat(filepath.Join(abs, b)); err != nil {
			return fmt.Errorf("%w: run make build first", err)
		}
	}
	if !c.tls && !c.http {
		return errors.New("--tls=false and --http=false leave nothing to run")
	}
	if c.duration < time.Second {
		return errors.New("--duration must be at least 1s")
	}
	if c.rounds < 1 {
		return errors.New("--rounds must be at least 1")
	}
	return nil
}
