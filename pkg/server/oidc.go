package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"

	"github.com/chaperone-dev/chaperone/pkg/api"
	"github.com/chaperone-dev/chaperone/pkg/auth"
)

// validateOIDC checks the people-authentication flags: an issuer needs a
// client id and must be https, or plain http on loopback (a test or a
// port-forwarded issuer); role flags without an issuer mean nothing.
func (c *Config) validateOIDC() error {
	roles := len(c.AdminGroups)+len(c.AuditorGroups)+len(c.ApproverGroups) > 0 || c.RolesFile != "" || c.OIDCCAFile != ""
	if c.OIDCIssuer == "" {
		if c.OIDCClientID != "" || roles {
			return fmt.Errorf("%w: --oidc-client-id, --oidc-ca-file and role flags need --oidc-issuer", ErrInvalidConfig)
		}
		return nil
	}
	u, err := url.Parse(c.OIDCIssuer)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%w: --oidc-issuer %q: want an https URL", ErrInvalidConfig, c.OIDCIssuer)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
	default:
		return fmt.Errorf("%w: --oidc-issuer %q: want https (plain http only on loopback)", ErrInvalidConfig, c.OIDCIssuer)
	}
	if c.OIDCClientID == "" {
		return fmt.Errorf("%w: --oidc-issuer needs --oidc-client-id (the audience tokens must carry)", ErrInvalidConfig)
	}
	if c.OIDCGroupsClaim == "" {
		c.OIDCGroupsClaim = auth.DefaultGroupsClaim
	}
	return nil
}

// verifier loads the roles and runs OIDC discovery; nil in local mode.
func (c *Config) verifier(ctx context.Context, logger *slog.Logger) (*auth.Verifier, error) {
	if c.LocalMode() {
		return nil, nil
	}
	roles := auth.RolesFromGroups(c.AdminGroups, c.AuditorGroups, c.ApproverGroups)
	if c.RolesFile != "" {
		fileRoles, err := auth.LoadRolesFile(c.RolesFile)
		if err != nil {
			return nil, err
		}
		roles = roles.Merge(fileRoles)
	}
	if len(roles.Grants) == 0 {
		logger.Warn("oidc: no role grants (--admin-groups, --auditor-groups, --approver-groups, --roles-file): people can sign in but reach nothing")
	}
	return auth.NewVerifier(ctx, auth.Options{
		Issuer:      c.OIDCIssuer,
		ClientID:    c.OIDCClientID,
		GroupsClaim: c.OIDCGroupsClaim,
		CAFile:      c.OIDCCAFile,
		Roles:       roles,
		Logger:      logger,
	})
}

// verifierOrNil keeps a nil *auth.Verifier from becoming a non-nil
// interface, which the API would take for authentication.
func verifierOrNil(v *auth.Verifier) api.TokenVerifier {
	if v == nil {
		return nil
	}
	return v
}
