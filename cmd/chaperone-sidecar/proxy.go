package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/mask"
	"github.com/chaperone-dev/chaperone/sidecar/admin"
	"github.com/chaperone-dev/chaperone/sidecar/certs"
	"github.com/chaperone-dev/chaperone/sidecar/http1"
	"github.com/chaperone-dev/chaperone/sidecar/k8s"
	"github.com/chaperone-dev/chaperone/sidecar/llm"
	"github.com/chaperone-dev/chaperone/sidecar/masking"
	"github.com/chaperone-dev/chaperone/sidecar/proxy"
	"github.com/chaperone-dev/chaperone/sidecar/publish"
	"github.com/chaperone-dev/chaperone/sidecar/spool"
)

// ProxyConfig is the validated configuration of `chaperone-sidecar proxy`.
type ProxyConfig struct {
	Listen        string
	AdminAddr     string
	Session       string
	Origin        string
	NATSURL       string
	SpoolDir      string
	SpoolMaxBytes int64
	BodyCap       int64
	FailOpen      bool
	DrainTimeout  time.Duration
	FlushTimeout  time.Duration
	LogLevel      slog.Level
	Identity      event.Identity
	// TrustDir receives the sidecar CA and the trust bundle (certs.CAFile,
	// certs.BundleFile) for the agent containers.
	TrustDir string
	// ExtraCA are PEM files of roots trusted upstream besides the system's.
	ExtraCA []string
	// NoIntercept lists the TLS destinations passed through (see
	// proxy.ParseBypass).
	NoIntercept []string
	// ControlStdin makes the sidecar read control lines from stdin: the
	// `chaperonectl run` that started it writes "exit N" when the command
	// ended, and session.end records N.
	ControlStdin bool
	// MaskKeyFile holds the key of the masking tokens; empty uses a key
	// generated once and kept in SpoolDir.
	MaskKeyFile string
	// MaskPII adds the PII masking rules (email addresses, card numbers).
	MaskPII bool
	// KubeAPI is the Kubernetes API server's address (host:port) whose
	// requests are decoded as such; empty decodes none.
	KubeAPI string
	// TokenFile is the pod's real service-account token for the API
	// server, which only the sidecar reads; with PlaceholderToken it turns
	// on credential brokering.
	TokenFile string
	// PlaceholderToken is the token the agent containers hold instead.
	PlaceholderToken string
	// PolicyWait bounds the wait for the first policy at start (from the
	// cache or the server) before connections are accepted.
	PolicyWait time.Duration
	// NATSTokenFile holds the token the sidecar authenticates to NATS with
	// (the pod's projected service-account token for the server's
	// audience); empty connects without.
	NATSTokenFile string
	// MaskResponses masks secrets in text responses on their way to the
	// agent too (policy maskResponses).
	MaskResponses bool
	// NoLLM turns off the decoding of LLM API and MCP traffic.
	NoLLM bool
	// LLMHosts are HOST=API pairs (see proxy.ParseLLMHosts).
	LLMHosts []string
	// Procs is how many OS threads run Go code at once (GOMAXPROCS);
	// the GOMAXPROCS environment variable wins. See DefaultProcs.
	Procs int
	// UpstreamIdle is how long an upstream HTTP/1.1 connection left idle
	// by a client is kept for the next client connection to the same
	// destination; 0 gives every client connection its own.
	UpstreamIdle time.Duration
}

// Validate checks that the configuration can run.
func (c ProxyConfig) Validate() error {
	var errs []error
	if c.Session == "" {
		errs = append(errs, errors.New("--session (or POD_UID) is required"))
	} else if err := event.ValidSession(c.Session); err != nil {
		errs = append(errs, fmt.Errorf("--session: %w", err))
	}
	if c.NATSURL == "" {
		errs = append(errs, errors.New("--nats-url (or CHAPERONE_NATS_URL) is required"))
	}
	if c.Procs < 0 {
		errs = append(errs, fmt.Errorf("--procs %d: want 0 (the Go default) or more", c.Procs))
	}
	if c.UpstreamIdle < 0 {
		errs = append(errs, fmt.Errorf("--upstream-idle %s: want 0 (no reuse) or more", c.UpstreamIdle))
	}
	if c.SpoolDir == "" {
		errs = append(errs, errors.New("--spool-dir is required"))
	}
	if c.Origin != "pod" && c.Origin != "run" {
		errs = append(errs, fmt.Errorf("--origin %q: want pod or run", c.Origin))
	}
	for name, addr := range map[string]string{"--listen": c.Listen, "--admin-addr": c.AdminAddr} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	if c.TrustDir == "" {
		errs = append(errs, errors.New("--trust-dir is required"))
	}
	if _, err := proxy.ParseBypass(c.NoIntercept); err != nil {
		errs = append(errs, fmt.Errorf("--%w", err))
	}
	if _, err := k8s.ParseTarget(c.KubeAPI); err != nil {
		errs = append(errs, fmt.Errorf("--kube-api: %w", err))
	}
	if (c.TokenFile == "") != (c.PlaceholderToken == "") {
		errs = append(errs, errors.New("--token-file and --placeholder-token go together"))
	}
	if _, err := proxy.ParseLLMHosts(c.LLMHosts); err != nil {
		errs = append(errs, fmt.Errorf("--llm-host: %w", err))
	}
	if c.SpoolMaxBytes < 0 || c.DrainTimeout < 0 || c.FlushTimeout < 0 || c.PolicyWait < 0 {
		errs = append(errs, errors.New("sizes and timeouts must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("proxy config: %w", err)
	}
	return nil
}

// identityFromEnv reads the downward-API variables the webhook sets.
func identityFromEnv(getenv func(string) string) event.Identity {
	id := event.Identity{
		User:           getenv("CHAPERONE_USER"),
		ServiceAccount: getenv("SERVICE_ACCOUNT"),
		Namespace:      getenv("POD_NAMESPACE"),
		Pod:            getenv("POD_NAME"),
		PodUID:         getenv("POD_UID"),
		Node:           getenv("NODE_NAME"),
	}
	for g := range strings.SplitSeq(getenv("CHAPERONE_GROUPS"), ",") {
		if g = strings.TrimSpace(g); g != "" {
			id.Groups = append(id.Groups, g)
		}
	}
	return id
}

// parseProxyFlags turns the proxy subcommand's arguments and environment
// into a config.
func parseProxyFlags(args []string, out io.Writer, getenv func(string) string) (ProxyConfig, error) {
	natsURL := getenv("CHAPERONE_NATS_URL")
	if natsURL == "" {
		natsURL = getenv("NATS_URL")
	}
	cfg := ProxyConfig{Identity: identityFromEnv(getenv)}
	fs := flag.NewFlagSet("chaperone-sidecar proxy", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintln(out, "usage: chaperone-sidecar proxy [flags]")
		fmt.Fprintln(out, "Records and relays the pod's redirected outbound connections.")
		fmt.Fprintln(out, "Identity comes from POD_NAME, POD_NAMESPACE, POD_UID, NODE_NAME, SERVICE_ACCOUNT, CHAPERONE_USER, CHAPERONE_GROUPS.")
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.Listen, "listen", proxy.DefaultListen, "address the redirected connections arrive on")
	fs.StringVar(&cfg.AdminAddr, "admin-addr", admin.DefaultAddr, "address of /healthz, /readyz and /metrics")
	fs.StringVar(&cfg.Session, "session", getenv("POD_UID"), "session id (default $POD_UID)")
	fs.StringVar(&cfg.Origin, "origin", "pod", `session origin: "pod" or "run"`)
	fs.StringVar(&cfg.NATSURL, "nats-url", natsURL, "NATS server URL (default $CHAPERONE_NATS_URL)")
	fs.StringVar(&cfg.SpoolDir, "spool-dir", "/var/run/chaperone/spool", "directory of the on-disk event spool")
	fs.Int64Var(&cfg.SpoolMaxBytes, "spool-max-bytes", spool.DefaultMaxBytes, "spool size limit; when full, connections are refused unless --fail-open")
	fs.Int64Var(&cfg.BodyCap, "body-cap", http1.DefaultBodyCap, "bytes of each HTTP body recorded (the rest is relayed, not recorded); negative: none")
	fs.BoolVar(&cfg.FailOpen, "fail-open", false, "relay connections even when recording cannot be guaranteed")
	fs.StringVar(&cfg.TrustDir, "trust-dir", certs.DefaultTrustDir, "where the sidecar CA ("+certs.CAFile+") and trust bundle ("+certs.BundleFile+") are written for the agent")
	fs.Func("extra-ca", "PEM file of roots trusted upstream besides the system's (repeatable; e.g. the cluster CA)", func(s string) error {
		cfg.ExtraCA = append(cfg.ExtraCA, s)
		return nil
	})
	fs.Func("no-intercept", "TLS destinations passed through without interception: host, *.domain, IP or CIDR (repeatable, comma-separated)", func(s string) error {
		for p := range strings.SplitSeq(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				cfg.NoIntercept = append(cfg.NoIntercept, p)
			}
		}
		return nil
	})
	fs.BoolVar(&cfg.ControlStdin, "control-stdin", false, `read "exit N" from stdin and record N in session.end (set by chaperonectl run)`)
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", 10*time.Second, "on SIGTERM, how long live connections may finish")
	fs.DurationVar(&cfg.FlushTimeout, "flush-timeout", 10*time.Second, "on SIGTERM, how long to deliver spooled events")
	fs.StringVar(&cfg.MaskKeyFile, "mask-key-file", getenv("CHAPERONE_MASK_KEY_FILE"), "file with the key of secret-masking tokens (default: generated in --spool-dir)")
	fs.BoolVar(&cfg.MaskPII, "mask-pii", false, "also mask email addresses and payment card numbers")
	fs.StringVar(&cfg.KubeAPI, "kube-api", k8s.TargetFromEnv(getenv), "Kubernetes API server address host:port whose requests are recorded as k8s.request events (default from $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT)")
	fs.StringVar(&cfg.TokenFile, "token-file", getenv("CHAPERONE_TOKEN_FILE"), "the pod's real service-account token for the API server, read only by the sidecar (default $CHAPERONE_TOKEN_FILE)")
	fs.StringVar(&cfg.PlaceholderToken, "placeholder-token", getenv("CHAPERONE_PLACEHOLDER_TOKEN"), "the token the agent holds; swapped for the real one on requests to --kube-api, refused elsewhere (default $CHAPERONE_PLACEHOLDER_TOKEN)")
	fs.DurationVar(&cfg.PolicyWait, "policy-wait", 5*time.Second, "at start, how long to wait for the policy (cached or from the server) before accepting connections")
	fs.StringVar(&cfg.NATSTokenFile, "nats-token-file", getenv("CHAPERONE_NATS_TOKEN_FILE"), "workload token presented to NATS (audience: the server's), read at every (re)connect (default $CHAPERONE_NATS_TOKEN_FILE)")
	fs.BoolVar(&cfg.MaskResponses, "mask-responses", getenv("CHAPERONE_MASK_RESPONSES") == "true", "also mask secrets in text responses on their way to the agent (a completion carrying a key arrives masked)")
	fs.BoolVar(&cfg.NoLLM, "no-llm", false, "do not decode LLM API and MCP traffic into llm.* and mcp.* events")
	fs.Func("llm-host", "HOST=API: decode every POST to HOST as API ("+strings.Join(llm.APIs, ", ")+"), for gateways with paths of their own (repeatable)", func(s string) error {
		cfg.LLMHosts = append(cfg.LLMHosts, s)
		return nil
	})
	fs.IntVar(&cfg.Procs, "procs", DefaultProcs, "OS threads running the proxy's Go code at once (GOMAXPROCS; 0: Go's default, from the CPU limit; the environment variable wins)")
	fs.DurationVar(&cfg.UpstreamIdle, "upstream-idle", proxy.DefaultUpstreamIdle, "how long an HTTP/1.1 upstream connection a client left idle is kept for the next client connection to the same destination (0: every client connection gets its own, closes passed on)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return ProxyConfig{}, err
	}
	if fs.NArg() > 0 {
		return ProxyConfig{}, fmt.Errorf("proxy: unexpected arguments %q", fs.Args())
	}
	if err := cfg.LogLevel.UnmarshalText([]byte(*level)); err != nil {
		return ProxyConfig{}, fmt.Errorf("proxy: --log-level: %w", err)
	}
	return cfg, cfg.Validate()
}

// runProxy is the `chaperone-sidecar proxy` subcommand.
func runProxy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseProxyFlags(args, stdout, os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	var ctl *control
	if cfg.ControlStdin {
		ctl = readControl(os.Stdin, log)
	}
	return cfg.run(ctx, log, ctl)
}

// run records until ctx ends (SIGTERM), then stops accepting, drains live
// connections for DrainTimeout, records session.end and flushes the spool.
func (c ProxyConfig) run(ctx context.Context, log *slog.Logger, ctl *control) error {
	tuneRuntime(c.Procs)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	id := c.Identity

	natsOpts, err := c.natsOptions(log)
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	pub, err := publish.New(ctx, publish.Options{
		Session:      c.Session,
		SpoolDir:     c.SpoolDir,
		SpoolOptions: spool.Options{MaxBytes: c.SpoolMaxBytes},
		NATSURL:      c.NATSURL,
		NATSOptions:  natsOpts,
		Logger:       log,
		Registerer:   reg,
	})
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	// Everything below runs past ctx's end: shutdown is ordered by hand.
	base := context.WithoutCancel(ctx)
	flush := func() error {
		fctx, cancel := context.WithTimeout(base, c.FlushTimeout)
		defer cancel()
		return pub.Close(fctx)
	}

	start := event.New(c.Session, event.KindSessionStart, time.Now())
	start.Source, start.Identity = event.SourceSidecar, &id
	start.SessionStart = &event.SessionStart{Origin: c.Origin}
	if err := pub.Publish(base, start); err != nil {
		return errors.Join(fmt.Errorf("proxy: record session start: %w", err), flush())
	}

	tlsOpts, err := c.setupTLS(base, log)
	if err != nil {
		return errors.Join(fmt.Errorf("proxy: %w", err), flush())
	}
	key, err := masking.LoadKey(c.MaskKeyFile, c.SpoolDir)
	if err != nil {
		return errors.Join(fmt.Errorf("proxy: %w", err), flush())
	}
	masker, err := mask.New(mask.Options{Key: key, PII: c.MaskPII})
	if err != nil {
		return errors.Join(fmt.Errorf("proxy: %w", err), flush())
	}
	kubeAPI, err := k8s.ParseTarget(c.KubeAPI)
	if err != nil {
		return errors.Join(fmt.Errorf("proxy: %w", err), flush())
	}
	g, err := c.startGate(ctx, base, pub, &id, log)
	if err != nil {
		return errors.Join(fmt.Errorf("proxy: %w", err), flush())
	}
	llmHosts, err := proxy.ParseLLMHosts(c.LLMHosts)
	if err != nil {
		return errors.Join(fmt.Errorf("proxy: %w", err), flush())
	}
	// Responses are masked always with --mask-responses, else while the
	// policy in force says maskResponses.
	inline := masking.NewInline(masker)
	p, err := proxy.New(proxy.Options{
		Gate:                  g,
		LLM:                   proxy.LLMOptions{Off: c.NoLLM, Hosts: llmHosts},
		MaskResponses:         inline,
		MaskResponsesByPolicy: !c.MaskResponses,
		KubeAPI:               kubeAPI,
		TLS:                   tlsOpts,
		Listen:                c.Listen,
		Recorder:              masking.New(pub, masker),
		Session:               c.Session,
		Identity:              &id,
		BodyCap:               c.BodyCap,
		FailOpen:              c.FailOpen,
		UpstreamIdle:          upstreamIdle(c.UpstreamIdle),
		Logger:                log,
		Registerer:            reg,
	})
	if err != nil {
		return errors.Join(fmt.Errorf("proxy: %w", err), flush())
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", c.Listen)
	if err != nil {
		return errors.Join(fmt.Errorf("proxy: listen: %w", err), flush())
	}
	adm := admin.New(admin.Options{
		Addr:     c.AdminAddr,
		Gatherer: reg,
		Logger:   log,
		Ready: []admin.Check{
			{Name: "proxy", Fn: p.Ready},
			{Name: "recorder", Fn: pub.Ready},
		},
	})
	admCtx, stopAdmin := context.WithCancel(base)
	defer stopAdmin()
	admDone := make(chan error, 1)
	go func() { admDone <- adm.ListenAndServe(admCtx) }()

	served := make(chan error, 1)
	go func() { served <- p.Serve(base, ln) }()
	releaseStartupMemory(log)
	// Start-up goes on for a moment in the background (the NATS
	// handshake, the policy watch's first update, the first events):
	// release what that touched too, once.
	trimLater := time.AfterFunc(startupSettle, func() { releaseStartupMemory(log) })
	defer trimLater.Stop()
	log.Info("sidecar proxy started", "session", c.Session, "listen", c.Listen, "admin", c.AdminAddr, "fail_open", c.FailOpen,
		"mask_responses", c.MaskResponses, "llm", !c.NoLLM)

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "drain_timeout", c.DrainTimeout)
	case runErr = <-served:
		runErr = fmt.Errorf("proxy: %w", runErr)
	case err := <-admDone:
		runErr = fmt.Errorf("proxy: %w", err)
	}
	dctx, cancel := context.WithTimeout(base, c.DrainTimeout)
	drainErr := p.Shutdown(dctx)
	cancel()
	if drainErr != nil {
		log.Warn("drain", "err", drainErr)
	}

	end := event.New(c.Session, event.KindSessionEnd, time.Now())
	end.Source, end.Identity = event.SourceSidecar, &id
	end.SessionEnd = &event.SessionEnd{Reason: "sidecar shutdown"}
	if code, ok := ctl.exitCode(); ok {
		end.SessionEnd.ExitCode = &code
		end.SessionEnd.Reason = fmt.Sprintf("command exited with status %d", code)
	}
	if runErr != nil {
		end.SessionEnd.Reason = runErr.Error()
	}
	var endErr error
	if err := pub.Publish(base, end); err != nil {
		endErr = fmt.Errorf("proxy: record session end: %w", err)
	}
	stopAdmin()
	return errors.Join(runErr, endErr, flush())
}

// setupTLS creates the sidecar's CA, writes the trust files for the agent
// and loads the roots trusted upstream. The CA key stays in memory. Until
// ctx ends the CA is rotated before it expires, the trust files rewritten
// with the new CA and the old one first.
func (c ProxyConfig) setupTLS(ctx context.Context, log *slog.Logger) (*proxy.TLSOptions, error) {
	roots, err := certs.RootPool(c.ExtraCA...)
	if err != nil {
		return nil, err
	}
	bypass, err := proxy.ParseBypass(c.NoIntercept)
	if err != nil {
		return nil, err
	}
	ca, err := certs.New(certs.Options{Session: c.Session})
	if err != nil {
		return nil, err
	}
	sys, err := certs.SystemRootsPEM()
	if err != nil {
		return nil, err
	}
	publish := func(trust []byte) error { return certs.WriteTrust(c.TrustDir, trust, sys) }
	if err := publish(ca.TrustPEM()); err != nil {
		return nil, err
	}
	go ca.RotateLoop(ctx, certs.DefaultRotateCheck, publish, log)
	return &proxy.TLSOptions{Minter: ca, RootCAs: roots, NoIntercept: bypass}, nil
}

// upstreamIdle maps --upstream-idle to proxy.Options.UpstreamIdle, where
// zero is the default and a negative value turns reuse off.
func upstreamIdle(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
