// Command chaperone-webhook is the sidecar-injecting mutating admission
// webhook: it serves /mutate over TLS with a certificate it creates and
// renews itself, and keeps its MutatingWebhookConfiguration's caBundle
// current. It also serves /validate-sessionpolicy, which refuses
// SessionPolicy objects whose rules do not compile.
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
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/chaperone-dev/chaperone/webhook"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := parseFlags(os.Args[1:], os.Stderr, os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaperone-webhook:", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	if err := cfg.run(ctx, log); err != nil {
		log.Error("exit", "error", err)
		os.Exit(1)
	}
}

// Certificate modes.
const (
	certModeSelf  = "self"
	certModeFiles = "files"
)

// Config is the validated configuration of chaperone-webhook.
type Config struct {
	Listen            string
	HealthAddr        string
	CertDir           string
	DNSNames          []string
	IPs               []net.IP
	WebhookConfigName string
	// ValidatingConfigName is the ValidatingWebhookConfiguration (of
	// SessionPolicy validation) whose caBundle is kept current; empty: none.
	ValidatingConfigName string
	// CertMode is "self" (the webhook's own rotating CA, optionally shared
	// through CertSecret) or "files" (tls.crt and tls.key in CertDir,
	// written by someone else, e.g. cert-manager).
	CertMode string
	// CertSecret in CertSecretNamespace shares the self-managed CA and
	// certificate between replicas; empty keeps them per replica.
	CertSecret, CertSecretNamespace string
	Kubeconfig                      string
	// NativeSidecar is "auto", "true" or "false"; auto asks the API server.
	NativeSidecar string
	RenewInterval time.Duration
	Inject        webhook.Config
	LogLevel      slog.Level
}

// Validate checks the flags.
func (c *Config) Validate() error {
	switch c.NativeSidecar {
	case "auto", "true", "false":
	default:
		return fmt.Errorf("--native-sidecar %q: want auto, true or false", c.NativeSidecar)
	}
	if c.Listen == "" || c.CertDir == "" {
		return errors.New("--listen and --cert-dir are required")
	}
	if len(c.DNSNames) == 0 && len(c.IPs) == 0 {
		return errors.New("--dns-names or --ips is required")
	}
	switch c.CertMode {
	case certModeSelf:
		if c.CertSecret != "" && c.CertSecretNamespace == "" {
			return errors.New("--cert-secret needs --cert-secret-namespace (or POD_NAMESPACE)")
		}
	case certModeFiles:
		if c.CertSecret != "" {
			return errors.New("--cert-secret is for --cert-mode=self")
		}
	default:
		return fmt.Errorf("--cert-mode %q: want self or files", c.CertMode)
	}
	if c.RenewInterval <= 0 {
		return errors.New("--renew-interval must be positive")
	}
	inj := c.Inject
	if inj.Mode == "" {
		inj.Mode = webhook.ModeNative // decided at run time when auto
	}
	return inj.Validate()
}

func parseFlags(args []string, out io.Writer, getenv func(string) string) (Config, error) {
	var cfg Config
	def := webhook.DefaultSidecarValues()
	fs := flag.NewFlagSet("chaperone-webhook", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&cfg.Listen, "listen", ":9443", "TLS address of the admission endpoint /mutate")
	fs.StringVar(&cfg.HealthAddr, "health-addr", ":9440", "plain HTTP address of /healthz, /readyz and /metrics")
	fs.StringVar(&cfg.CertDir, "cert-dir", "/var/run/chaperone/webhook-certs", "where the webhook keeps its CA and serving certificate")
	dns := fs.String("dns-names", "chaperone-webhook.chaperone.svc", "comma-separated DNS names of the serving certificate")
	ips := fs.String("ips", "", "comma-separated IP addresses of the serving certificate")
	fs.StringVar(&cfg.WebhookConfigName, "webhook-config-name", "chaperone-webhook", "MutatingWebhookConfiguration whose caBundle is kept current; empty: none")
	fs.StringVar(&cfg.ValidatingConfigName, "validating-webhook-config-name", "", "ValidatingWebhookConfiguration (SessionPolicy validation at "+webhook.PathValidateSessionPolicy+") whose caBundle is kept current; empty: none")
	fs.StringVar(&cfg.CertMode, "cert-mode", certModeSelf, "self: own rotating CA and certificate; files: serve tls.crt/tls.key from --cert-dir as written by e.g. cert-manager")
	fs.StringVar(&cfg.CertSecret, "cert-secret", "", "Secret that shares the self-managed CA and certificate between replicas (needs get and update on it)")
	fs.StringVar(&cfg.CertSecretNamespace, "cert-secret-namespace", getenv("POD_NAMESPACE"), "namespace of --cert-secret (default $POD_NAMESPACE)")
	fs.StringVar(&cfg.Kubeconfig, "kubeconfig", getenv("KUBECONFIG"), "kubeconfig file (default: in-cluster)")
	fs.DurationVar(&cfg.RenewInterval, "renew-interval", time.Hour, "how often the certificate and caBundle are checked")
	valuesFile := fs.String("sidecar-config", "", "YAML file of the sidecar settings (the chart's sidecar values); the flags below override it")
	native := fs.String("native-sidecar", "auto", "inject the sidecar as a native sidecar: auto (API server >= 1.29), true or false")
	image := fs.String("sidecar-image", def.Image.Ref(), "image of chaperone-sidecar (init and proxy)")
	natsURL := fs.String("nats-url", "", "NATS URL given to sidecars as CHAPERONE_NATS_URL")
	audience := fs.String("token-audience", def.TokenAudience, "audience of the sidecar's projected service-account token")
	placeholder := fs.String("placeholder-token", def.PlaceholderToken, "what agents find as their service-account token; the sidecar swaps it for the real one")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := cfg.LogLevel.UnmarshalText([]byte(*level)); err != nil {
		return Config{}, fmt.Errorf("--log-level: %w", err)
	}
	cfg.DNSNames = splitList(*dns)
	for _, s := range splitList(*ips) {
		ip := net.ParseIP(s)
		if ip == nil {
			return Config{}, fmt.Errorf("--ips: %q is not an IP address", s)
		}
		cfg.IPs = append(cfg.IPs, ip)
	}

	// The file (or the built-in defaults, which equal the chart's values)
	// first, then the flags given on the command line.
	values := def
	if *valuesFile != "" {
		var err error
		if values, err = webhook.LoadSidecarValues(*valuesFile); err != nil {
			return Config{}, fmt.Errorf("--sidecar-config: %w", err)
		}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	values.Apply(&cfg.Inject)
	cfg.NativeSidecar = map[string]string{
		webhook.ValuesModeNative: "true", webhook.ValuesModeClassic: "false",
	}[values.Mode]
	if cfg.NativeSidecar == "" || set["native-sidecar"] {
		cfg.NativeSidecar = *native
	}
	for name, apply := range map[string]func(){
		"sidecar-image":     func() { cfg.Inject.SidecarImage = *image },
		"nats-url":          func() { cfg.Inject.NATSURL = *natsURL },
		"token-audience":    func() { cfg.Inject.TokenAudience = *audience },
		"placeholder-token": func() { cfg.Inject.PlaceholderToken = *placeholder },
	} {
		if set[name] {
			apply()
		}
	}
	switch cfg.NativeSidecar {
	case "true":
		cfg.Inject.Mode = webhook.ModeNative
	case "false":
		cfg.Inject.Mode = webhook.ModeClassic
	default:
		cfg.Inject.Mode = ""
	}
	return cfg, cfg.Validate()
}

func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
