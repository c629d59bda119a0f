package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/chaperone-dev/chaperone/pkg/auth"
	"github.com/chaperone-dev/chaperone/pkg/natsauth"
	"github.com/chaperone-dev/chaperone/pkg/natsbus"
)

// Defaults of the workload authentication.
const (
	// DefaultWorkloadAudience matches the webhook's --token-audience.
	DefaultWorkloadAudience = "chaperone"
	// DefaultNATSUser is the server's own NATS user.
	DefaultNATSUser = "chaperone-server"
	// WorkloadIssuerKeyFile, in DataDir, holds the key of the tokens the
	// server mints for one-machine sessions.
	WorkloadIssuerKeyFile = "workload-issuer.pem"
)

// validateWorkload checks the workload and NATS authentication flags.
func (c *Config) validateWorkload() error {
	if c.WorkloadAudience == "" {
		c.WorkloadAudience = DefaultWorkloadAudience
	}
	if c.NATSUser == "" {
		c.NATSUser = DefaultNATSUser
	}
	if c.WorkloadIssuer == "" {
		if c.WorkloadDiscoveryURL != "" || c.WorkloadCAFile != "" || c.WorkloadTokenFile != "" || len(c.NodeAgentServiceAccounts) > 0 {
			return fmt.Errorf("%w: --workload-discovery-url, --workload-ca-file, --workload-token-file and --node-agent-service-accounts need --workload-issuer", ErrInvalidConfig)
		}
	} else {
		if err := checkIssuerURL(c.WorkloadIssuer); err != nil {
			return fmt.Errorf("%w: --workload-issuer: %w", ErrInvalidConfig, err)
		}
		if c.WorkloadDiscoveryURL != "" {
			if err := checkIssuerURL(c.WorkloadDiscoveryURL); err != nil {
				return fmt.Errorf("%w: --workload-discovery-url: %w", ErrInvalidConfig, err)
			}
		}
	}
	for _, sa := range c.NodeAgentServiceAccounts {
		if _, err := natsauth.ParseServiceAccountRef(sa); err != nil {
			return fmt.Errorf("%w: --node-agent-service-accounts: %w", ErrInvalidConfig, err)
		}
	}
	if c.NATSURL == "" {
		if c.NATSCalloutSeedFile != "" || c.NATSCalloutAccount != "" {
			return fmt.Errorf("%w: --nats-callout-issuer-seed-file and --nats-callout-account are for an external --nats-url; the embedded server makes its own", ErrInvalidConfig)
		}
		return nil
	}
	if c.NATSCalloutSeedFile == "" {
		if c.WorkloadIssuer != "" || c.NATSCalloutAccount != "" {
			return fmt.Errorf("%w: --workload-issuer and --nats-callout-account with --nats-url need --nats-callout-issuer-seed-file (the external NATS must send its auth callout to this server)", ErrInvalidConfig)
		}
	}
	return nil
}

// checkIssuerURL wants https, or plain http on loopback.
func checkIssuerURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q: want an https URL", s)
	}
	if u.Scheme == "https" || (u.Scheme == "http" && isLoopback(u.Hostname())) {
		return nil
	}
	return fmt.Errorf("%q: want https (plain http only on loopback)", s)
}

// natsAuth is the NATS authentication of one server run: its own user, the
// callout's signing key and the issuers it trusts.
type natsAuth struct {
	user, password string
	// signer is nil when the server answers no callout (an external NATS
	// without --nats-callout-issuer-seed-file).
	signer  nkeys.KeyPair
	account string
	local   *natsauth.LocalIssuer
	trusted []natsauth.Trusted
	agents  []natsauth.ServiceAccountRef
}

// natsAuth reads or makes the keys and runs the workload issuer's
// discovery. Call it once DataDir exists.
func (c *Config) natsAuth(ctx context.Context, logger *slog.Logger) (*natsAuth, error) {
	a := &natsAuth{user: c.NATSUser, account: c.NATSCalloutAccount}
	var err error
	if c.NATSPasswordFile != "" {
		if a.password, err = readSecret(c.NATSPasswordFile); err != nil {
			return nil, fmt.Errorf("--nats-password-file: %w", err)
		}
	} else if c.NATSURL == "" {
		var b [24]byte
		_, _ = rand.Read(b[:])
		a.password = hex.EncodeToString(b[:])
	}
	switch {
	case c.NATSURL == "":
		if a.signer, err = nkeys.CreateAccount(); err != nil {
			return nil, fmt.Errorf("nats callout key: %w", err)
		}
	case c.NATSCalloutSeedFile != "":
		seed, err := readSecret(c.NATSCalloutSeedFile)
		if err != nil {
			return nil, fmt.Errorf("--nats-callout-issuer-seed-file: %w", err)
		}
		if a.signer, err = nkeys.FromSeed([]byte(seed)); err != nil {
			return nil, fmt.Errorf("--nats-callout-issuer-seed-file: %w", err)
		}
		if pub, err := a.signer.PublicKey(); err != nil || !nkeys.IsValidPublicAccountKey(pub) {
			return nil, fmt.Errorf("%w: --nats-callout-issuer-seed-file: want an account seed (SA…)", ErrInvalidConfig)
		}
	}
	for _, sa := range c.NodeAgentServiceAccounts {
		ref, _ := natsauth.ParseServiceAccountRef(sa)
		a.agents = append(a.agents, ref)
	}
	if a.local, err = natsauth.LoadLocalIssuer(filepath.Join(c.DataDir, WorkloadIssuerKeyFile), c.WorkloadAudience); err != nil {
		return nil, err
	}
	localV, err := a.local.Verifier(ctx)
	if err != nil {
		return nil, err
	}
	a.trusted = append(a.trusted, natsauth.Trusted{Issuer: natsauth.LocalIssuerName, Verifier: localV})
	if c.WorkloadIssuer != "" {
		v, err := auth.NewVerifier(ctx, auth.Options{
			Issuer:          c.WorkloadIssuer,
			ClientID:        c.WorkloadAudience,
			DiscoveryURL:    c.WorkloadDiscoveryURL,
			CAFile:          c.WorkloadCAFile,
			BearerTokenFile: c.WorkloadTokenFile,
			Logger:          logger,
		})
		if err != nil {
			return nil, fmt.Errorf("workload issuer: %w", err)
		}
		a.trusted = append(a.trusted, natsauth.Trusted{Issuer: c.WorkloadIssuer, Verifier: v})
	}
	return a, nil
}

// embedded is the embedded server's authentication.
func (a *natsAuth) embedded() *natsbus.EmbeddedAuth {
	pub, _ := a.signer.PublicKey()
	return &natsbus.EmbeddedAuth{User: a.user, Password: a.password, CalloutIssuer: pub}
}

// connectOptions authenticate the server's own connection.
func (a *natsAuth) connectOptions() []nats.Option {
	if a.password == "" {
		return nil
	}
	return []nats.Option{nats.UserInfo(a.user, a.password)}
}

// startCallout answers the auth callout on nc; nil when there is none.
func (a *natsAuth) startCallout(ctx context.Context, nc *nats.Conn, reg prometheus.Registerer, logger *slog.Logger) (*natsauth.Service, error) {
	if a.signer == nil {
		logger.Warn("no NATS auth callout: the external NATS authenticates workloads itself (set --nats-callout-issuer-seed-file to have this server do it)")
		return nil, nil
	}
	return natsauth.Start(ctx, natsauth.Options{
		Conn:       nc,
		Signer:     a.signer,
		Account:    a.account,
		Trusted:    a.trusted,
		NodeAgents: a.agents,
		Logger:     logger,
		Registerer: reg,
	})
}

// readSecret reads a secret file, trimmed of surrounding white space.
func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", errors.New(path + ": empty")
	}
	return s, nil
}
