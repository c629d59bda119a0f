// Package principal carries the person behind an API request through its
// context: the authentication middleware puts it there, handlers that act
// on someone's behalf (approvals) read it.
package principal

import (
	"context"
	"os/user"
	"slices"
	"strings"
)

// AdminGroup is the group of the local-mode administrator.
const AdminGroup = "chaperone:admin"

// Principal is an authenticated person.
type Principal struct {
	// Subject is the stable id the identity provider gave (OIDC "sub"), or
	// the OS user name of the local-mode administrator.
	Subject string `json:"subject"`
	// Email is the person's e-mail address, when known.
	Email string `json:"email,omitempty"`
	// Groups are the person's groups from the identity provider.
	Groups []string `json:"groups,omitempty"`
	// Roles are what the server lets the person do, mapped from Groups by
	// the server's role configuration.
	Roles []Role `json:"roles,omitempty"`
	// Namespaces limits what the auditor role may read to sessions of these
	// Kubernetes namespaces; empty means no limit.
	Namespaces []string `json:"namespaces,omitempty"`
	// Local is set on the local-mode administrator: the server runs
	// without authentication, on loopback, and whoever reaches it is the
	// machine's operator.
	Local bool `json:"local,omitempty"`
}

type key struct{}

// With returns ctx carrying p.
func With(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, key{}, p)
}

// From returns the principal in ctx, if there is one.
func From(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(key{}).(Principal)
	return p, ok
}

// Local returns the local-mode administrator, named by the OS user running
// the server.
func Local() Principal {
	name := "local"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	return Principal{Subject: name, Groups: []string{AdminGroup}, Roles: []Role{RoleAdmin}, Local: true}
}

// Name is how the principal is shown and recorded: the e-mail address when
// known, the subject otherwise.
func (p Principal) Name() string {
	if p.Email != "" {
		return p.Email
	}
	return p.Subject
}

// Is reports whether p is the person named by id (a subject or an e-mail
// address, compared without case).
func (p Principal) Is(id string) bool {
	if id == "" {
		return false
	}
	return strings.EqualFold(p.Subject, id) || (p.Email != "" && strings.EqualFold(p.Email, id))
}

// InAny reports whether p belongs to one of groups.
func (p Principal) InAny(groups []string) bool {
	for _, g := range groups {
		if slices.Contains(p.Groups, g) {
			return true
		}
	}
	return false
}
