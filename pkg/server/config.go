package server

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Defaults for Config.
const (
	DefaultHTTPAddr        = "127.0.0.1:8080"
	DefaultNATSAddr        = "127.0.0.1:4222"
	DefaultLogLevel        = "info"
	DefaultLogFormat       = "text"
	DefaultShutdownTimeout = 30 * time.Second
)

// Errors returned by Config.Validate; they are wrapped with detail.
var (
	ErrInvalidConfig = errors.New("invalid config")
	ErrNotSupported  = errors.New("not supported yet")
)

// Config is everything chaperone-server is told at start.
type Config struct {
	// DataDir holds the store (chaperone.db), the embedded NATS data (nats/)
	// and addresses.json. Required; created if missing.
	DataDir string
	// HTTPAddr is where the API listens, "host:port"; port 0 picks one.
	HTTPAddr string
	// NATSAddr is where the embedded NATS server listens, "host:port";
	// port 0 picks one. Ignored when NATSURL is set.
	NATSAddr string
	// NATSURL selects an external NATS server instead of the embedded one.
	NATSURL string

	// OIDCIssuer, OIDCClientID and OIDCGroupsClaim configure people's
	// authentication. Without an issuer the server runs in local mode:
	// loopback only, no authentication.
	OIDCIssuer      string
	OIDCClientID    string
	OIDCGroupsClaim string
	// OIDCCAFile holds extra PEM roots for the issuer's TLS certificate.
	OIDCCAFile string
	// AdminGroups, AuditorGroups and ApproverGroups give their members a
	// role (--admin-groups, --auditor-groups, --approver-groups).
	AdminGroups    []string
	AuditorGroups  []string
	ApproverGroups []string
	// RolesFile is a YAML file of group grants, the way to limit auditors
	// to namespaces (see auth.LoadRolesFile). Its grants add to the flags'.
	RolesFile string

	// PolicyFile is a SessionPolicy YAML file, for use outside Kubernetes.
	PolicyFile string
	// KubePolicies distributes the cluster's SessionPolicy objects
	// (--kube-policies): watched with Kubeconfig, or the in-cluster config
	// when that is empty. It excludes PolicyFile: one source of truth.
	KubePolicies bool
	// Kubeconfig is the kubeconfig file for KubePolicies.
	Kubeconfig string
	// ApprovalWebhookURL is where Slack-style approval messages are posted.
	ApprovalWebhookURL string
	// SlackSigningSecretFile holds the secret that signs Slack callbacks.
	SlackSigningSecretFile string
	// SlackUsersFile maps Slack user ids to people (JSON:
	// {"U024BE7LH": {"email": "ann@example.com", "groups": ["sre"]}}).
	SlackUsersFile string

	// Workload authentication on NATS (see workload.go and pkg/natsauth).
	// WorkloadIssuer is the cluster's service-account issuer; without it
	// only tokens the server mints itself are accepted.
	WorkloadIssuer string
	// WorkloadAudience is the audience workload tokens must carry, the one
	// the webhook projects (default DefaultWorkloadAudience).
	WorkloadAudience string
	// WorkloadDiscoveryURL is where the issuer's discovery is read when the
	// issuer URL is not reachable under its own name.
	WorkloadDiscoveryURL string
	// WorkloadCAFile holds PEM roots for the issuer's TLS certificate.
	WorkloadCAFile string
	// WorkloadTokenFile holds a bearer token for discovery and key-set
	// requests (the server's own service-account token).
	WorkloadTokenFile string
	// NodeAgentServiceAccounts are NAMESPACE/NAME of node agents.
	NodeAgentServiceAccounts []string
	// NATSUser and NATSPasswordFile are the server's own NATS user; the
	// embedded server generates a password when no file is given.
	NATSUser         string
	NATSPasswordFile string
	// NATSCalloutSeedFile holds the account nkey seed that signs callout
	// answers for an external NATS (whose auth_callout names its public
	// key); without it the server answers no callout there.
	NATSCalloutSeedFile string
	// NATSCalloutAccount is the account workloads are placed in on an
	// external NATS (default natsauth.GlobalAccount).
	NATSCalloutAccount string

	// LogLevel is debug, info, warn or error.
	LogLevel string
	// LogFormat is text or json.
	LogFormat string
	// ShutdownTimeout bounds the orderly stop after the context ends.
	ShutdownTimeout time.Duration
	// Version is reported by the API.
	Version string
}

// LocalMode reports whether the server runs without authentication.
func (c *Config) LocalMode() bool { return c.OIDCIssuer == "" }

// Validate fills in defaults for empty fields and checks the config.
func (c *Config) Validate() error {
	if c.HTTPAddr == "" {
		c.HTTPAddr = DefaultHTTPAddr
	}
	if c.NATSAddr == "" {
		c.NATSAddr = DefaultNATSAddr
	}
	if c.LogLevel == "" {
		c.LogLevel = DefaultLogLevel
	}
	if c.LogFormat == "" {
		c.LogFormat = DefaultLogFormat
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.DataDir == "" {
		return fmt.Errorf("%w: --data-dir is required", ErrInvalidConfig)
	}
	host, err := checkHostPort(c.HTTPAddr)
	if err != nil {
		return fmt.Errorf("%w: --http-addr: %w", ErrInvalidConfig, err)
	}
	if c.NATSURL == "" {
		if _, err := checkHostPort(c.NATSAddr); err != nil {
			return fmt.Errorf("%w: --nats-addr: %w", ErrInvalidConfig, err)
		}
	} else {
		u, err := url.Parse(c.NATSURL)
		if err != nil || u.Host == "" {
			return fmt.Errorf("%w: --nats-url %q: want nats://host:port", ErrInvalidConfig, c.NATSURL)
		}
	}
	if c.KubePolicies && c.PolicyFile != "" {
		return fmt.Errorf("%w: --policy-file and --kube-policies exclude each other: policy comes either from a file or from the cluster's SessionPolicy objects (to move a file into the cluster: kubectl apply -f FILE)", ErrInvalidConfig)
	}
	if c.Kubeconfig != "" && !c.KubePolicies {
		return fmt.Errorf("%w: --kubeconfig is only used with --kube-policies", ErrInvalidConfig)
	}
	if err := c.validateOIDC(); err != nil {
		return err
	}
	if err := c.validateWorkload(); err != nil {
		return err
	}
	if c.LocalMode() && !isLoopback(host) {
		return fmt.Errorf("%w: --http-addr %q: without --oidc-issuer the API has no authentication and listens on loopback only", ErrInvalidConfig, c.HTTPAddr)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return fmt.Errorf("%w: --log-level: %w", ErrInvalidConfig, err)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("%w: --log-format %q: want text or json", ErrInvalidConfig, c.LogFormat)
	}
	return nil
}

// Logger returns the logger the config asks for, writing to w. Call it
// after Validate.
func (c *Config) Logger(w io.Writer) *slog.Logger {
	level, err := parseLevel(c.LogLevel)
	if err != nil {
		level = slog.LevelInfo
	}
	o := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("%q: want debug, info, warn or error", s)
	}
	return l, nil
}

func checkHostPort(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("%q: %w", addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return "", fmt.Errorf("%q: bad port", addr)
	}
	return host, nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
