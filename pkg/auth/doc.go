// Package auth authenticates people on chaperone-server: it verifies OIDC
// bearer tokens against the issuer's discovered key set (fetched, cached
// and refreshed on key rotation) and maps the token's groups to the
// server's roles (auditor, approver, admin), with auditors optionally
// limited to Kubernetes namespaces.
package auth
