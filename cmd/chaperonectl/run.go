package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/chaperone-dev/chaperone/pkg/client"
	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/policy"
	"github.com/chaperone-dev/chaperone/pkg/render"
	"github.com/chaperone-dev/chaperone/pkg/runner"
)

type runFlags struct {
	natsURL    string
	user       string
	sidecarLog string
	wait       time.Duration
	extraCA    []string
	policy     string
	// maskResponses asks the sidecar to mask responses to CMD too.
	maskResponses bool
}

func newRunCmd(g *globals) *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run [flags] -- CMD [ARGS...]",
		Short: "Run a command behind a real recording sidecar in a fresh network namespace (root)",
		Long: `Run creates a fresh network namespace wired to the host by a veth pair,
installs the redirect rules, starts chaperone-sidecar inside it under its own UID,
and runs CMD there without CAP_NET_ADMIN and CAP_NET_RAW: every TCP connection CMD
makes is recorded, and none can bypass the sidecar. TLS is intercepted with the
sidecar's own CA, which CMD trusts through SSL_CERT_FILE, CURL_CA_BUNDLE,
REQUESTS_CA_BUNDLE, GIT_SSL_CAINFO and NODE_EXTRA_CA_CERTS; the sidecar verifies
upstreams against the system roots plus --extra-ca. It prints "session: <id>" on
stderr, a summary when CMD ends, and exits with CMD's exit status.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRun(cmd.Context(), g, f, args)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.natsURL, "nats-url", "", "NATS URL for the sidecar (default: the server's, from /api/v1/info)")
	fl.StringVar(&f.user, "user", "", "who the session is recorded for (default: $SUDO_USER or $USER)")
	fl.StringVar(&f.sidecarLog, "sidecar-log", "", "write the sidecar's log to this file (default: warnings to stderr)")
	fl.StringArrayVar(&f.extraCA, "extra-ca", nil, "PEM file of roots the sidecar trusts upstream besides the system's (repeatable)")
	fl.DurationVar(&f.wait, "wait", 30*time.Second, "how long to wait for the server to store the session")
	fl.StringVar(&f.policy, "policy", "", "SessionPolicy YAML file deciding this session's requests (compiled here, then distributed by the server like its own policy)")
	fl.BoolVar(&f.maskResponses, "mask-responses", false, "mask secrets in text responses on their way to CMD too (as policy maskResponses does)")
	return cmd
}

func runRun(ctx context.Context, g *globals, f runFlags, command []string) error {
	if os.Geteuid() != 0 {
		return errors.New("run creates a network namespace and nftables rules: it must run as root")
	}
	var policyDoc []byte
	if f.policy != "" {
		// Checked here first, so a mistake is named before anything starts;
		// the server compiles the same bytes again.
		ps, err := policy.LoadFile(f.policy)
		if err != nil {
			return fmt.Errorf("--policy: %w", err)
		}
		if _, err = policy.Compile(ps); err != nil {
			return fmt.Errorf("--policy %s: %w", f.policy, err)
		}
		if policyDoc, err = os.ReadFile(f.policy); err != nil {
			return fmt.Errorf("--policy: %w", err)
		}
	}
	cl, err := g.Client()
	if err != nil {
		return err
	}
	natsURL := f.natsURL
	if natsURL == "" {
		info, err := cl.Info(ctx)
		if err != nil {
			return fmt.Errorf("ask the server for its NATS address (or pass --nats-url): %w", err)
		}
		natsURL = info.NATS
	}
	user := f.user
	if user == "" {
		user = runner.CurrentUser()
	}
	opts := runner.Options{
		Policy:      policyDoc,
		Policies:    cl,
		Command:     command,
		ExtraCA:     f.extraCA,
		NATSURL:     natsURL,
		Token:       cl.WorkloadToken,
		User:        user,
		Stdin:       os.Stdin,
		Stdout:      g.streams.out,
		Stderr:      g.streams.err,
		SidecarLog:  g.streams.err,
		Logger:      slog.New(slog.NewTextHandler(g.streams.err, &slog.HandlerOptions{Level: slog.LevelWarn})),
		SidecarArgs: []string{"--log-level", "warn"},
		Started: func(s runner.Started) {
			fmt.Fprintf(g.streams.err, "session: %s\n", s.Session)
		},
	}
	if f.maskResponses {
		opts.SidecarArgs = append(opts.SidecarArgs, "--mask-responses")
	}
	if f.sidecarLog != "" {
		lf, err := os.OpenFile(f.sidecarLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("--sidecar-log: %w", err)
		}
		defer lf.Close()
		opts.SidecarLog = lf
		opts.SidecarArgs = []string{"--log-level", "info"}
	}
	res, err := runner.Run(ctx, opts)
	if err != nil {
		return err
	}
	if err := printSummary(ctx, g, cl, res.Session, f.wait); err != nil {
		fmt.Fprintf(g.streams.err, "chaperonectl: summary: %v\n", err)
	}
	if res.ExitCode != 0 {
		return &exitError{code: res.ExitCode}
	}
	return nil
}

// summaryLines bounds the list of requests in the summary to one screen.
const summaryLines = 15

// printSummary waits for the server to store the session's end and prints
// a one-screen summary on stderr.
func printSummary(ctx context.Context, g *globals, cl *client.Client, id string, wait time.Duration) error {
	if _, err := cl.WaitEnded(ctx, id, wait); err != nil {
		return err
	}
	counts := map[event.Kind]int{}
	var lines []string
	total := 0
	err := cl.Events(ctx, id, 0, func(e *event.Event) error {
		total++
		counts[e.Kind]++
		switch e.Kind {
		case event.KindHTTPRequest, event.KindHTTPResponse, event.KindConnClose, event.KindK8sRequest, event.KindPolicyDecision:
			if len(lines) < summaryLines {
				lines = append(lines, render.Line(e))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	w := g.streams.err
	fmt.Fprintf(w, "\nsession %s: %d events\n", id, total)
	kinds := make([]string, 0, len(counts))
	for k := range counts {
		kinds = append(kinds, string(k))
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		fmt.Fprintf(w, "  %-18s %d\n", k, counts[event.Kind(k)])
	}
	if len(lines) > 0 {
		fmt.Fprintln(w)
		for _, l := range lines {
			fmt.Fprintf(w, "  %s\n", l)
		}
		if n := counts[event.KindHTTPRequest] + counts[event.KindHTTPResponse] + counts[event.KindConnClose] + counts[event.KindK8sRequest]; n > len(lines) {
			fmt.Fprintf(w, "  … %d more: chaperonectl sessions show %s\n", n-len(lines), id)
		}
	}
	return nil
}
