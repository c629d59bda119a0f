// Command chaperone-server is Chaperone's central service: it ingests
// session events from NATS into the hash-chained store and serves them to
// auditors over the HTTP API.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/chaperone-dev/chaperone/pkg/server"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// run returns the exit code: 0, 1 when the server fails, 2 on bad flags.
func run(args []string, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "chaperone-server:", err)
		return 2
	}
	tuneRuntime()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := server.Run(ctx, cfg, cfg.Logger(stderr)); err != nil {
		fmt.Fprintln(stderr, "chaperone-server:", err)
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (server.Config, error) {
	cfg := server.Config{Version: version}
	fs := flag.NewFlagSet("chaperone-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.DataDir, "data-dir", "", "directory for the store, embedded NATS data and addresses.json (required)")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", server.DefaultHTTPAddr, "API listen address host:port (port 0 picks one)")
	fs.StringVar(&cfg.NATSAddr, "nats-addr", server.DefaultNATSAddr, "embedded NATS listen address host:port (port 0 picks one)")
	fs.StringVar(&cfg.NATSURL, "nats-url", "", "external NATS URL to use instead of the embedded server")
	fs.StringVar(&cfg.OIDCIssuer, "oidc-issuer", "", "OIDC issuer URL for people's tokens (without it: local mode, no authentication, loopback only)")
	fs.StringVar(&cfg.OIDCClientID, "oidc-client-id", "", "OIDC client id (audience)")
	fs.StringVar(&cfg.OIDCGroupsClaim, "oidc-groups-claim", "groups", "OIDC claim holding the user's groups")
	fs.StringVar(&cfg.OIDCCAFile, "oidc-ca-file", "", "PEM file of extra CA certificates for the OIDC issuer's TLS")
	fs.Func("admin-groups", "comma-separated groups whose members are admins", groupList(&cfg.AdminGroups))
	fs.Func("auditor-groups", "comma-separated groups whose members read all sessions", groupList(&cfg.AuditorGroups))
	fs.Func("approver-groups", "comma-separated groups whose members answer approvals", groupList(&cfg.ApproverGroups))
	fs.StringVar(&cfg.RolesFile, "roles-file", "", "YAML file of group role grants, e.g. auditors limited to namespaces")
	fs.StringVar(&cfg.PolicyFile, "policy-file", "", "SessionPolicy YAML file, for use outside Kubernetes")
	fs.BoolVar(&cfg.KubePolicies, "kube-policies", false, "distribute the cluster's SessionPolicy objects (watched; status Ready written back); excludes --policy-file")
	fs.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "kubeconfig for --kube-policies (default: the in-cluster config)")
	fs.StringVar(&cfg.ApprovalWebhookURL, "approval-webhook-url", "", "URL that Slack-style approval messages are posted to")
	fs.StringVar(&cfg.SlackSigningSecretFile, "slack-signing-secret-file", "", "file holding the Slack signing secret for callbacks")
	fs.StringVar(&cfg.SlackUsersFile, "slack-users-file", "", "JSON file mapping Slack user ids to e-mail and groups, for approvals")
	fs.StringVar(&cfg.WorkloadIssuer, "workload-issuer", "", "the cluster's service-account token issuer; workloads' NATS tokens are verified against it (without it only tokens this server mints are accepted)")
	fs.StringVar(&cfg.WorkloadAudience, "workload-audience", server.DefaultWorkloadAudience, "audience workload tokens must carry (the webhook's --token-audience)")
	fs.StringVar(&cfg.WorkloadDiscoveryURL, "workload-discovery-url", "", "where to read the issuer's discovery when the issuer URL is not reachable by name (e.g. https://kubernetes.default.svc)")
	fs.StringVar(&cfg.WorkloadCAFile, "workload-ca-file", "", "PEM file of CA certificates for the workload issuer's TLS (in a pod: the service-account ca.crt)")
	fs.StringVar(&cfg.WorkloadTokenFile, "workload-token-file", "", "bearer token file sent with discovery and key-set requests (in a pod: its service-account token)")
	fs.Func("node-agent-service-accounts", "comma-separated NAMESPACE/NAME service accounts of node agents (may publish events of any session)", groupList(&cfg.NodeAgentServiceAccounts))
	fs.StringVar(&cfg.NATSUser, "nats-user", server.DefaultNATSUser, "the server's own NATS user")
	fs.StringVar(&cfg.NATSPasswordFile, "nats-password-file", "", "file with the server's NATS password (embedded NATS: generated when absent)")
	fs.StringVar(&cfg.NATSCalloutSeedFile, "nats-callout-issuer-seed-file", "", "external NATS: account nkey seed signing the auth callout answers (its public key is the auth_callout issuer)")
	fs.StringVar(&cfg.NATSCalloutAccount, "nats-callout-account", "", "external NATS: account workloads are placed in (default $G)")
	fs.StringVar(&cfg.LogLevel, "log-level", server.DefaultLogLevel, "debug, info, warn or error")
	fs.StringVar(&cfg.LogFormat, "log-format", server.DefaultLogFormat, "text or json")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", server.DefaultShutdownTimeout, "bound on the orderly stop")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// groupList is a flag that appends comma-separated group names; it may be
// repeated.
func groupList(dst *[]string) func(string) error {
	return func(v string) error {
		for _, g := range strings.Split(v, ",") {
			if g = strings.TrimSpace(g); g != "" {
				*dst = append(*dst, g)
			}
		}
		return nil
	}
}
