package auth

import (
	"errors"
	"fmt"
	"os"
	"slices"

	"sigs.k8s.io/yaml"

	"github.com/chaperone-dev/chaperone/pkg/principal"
)

// ErrRoles is returned for a role configuration that cannot be used.
var ErrRoles = errors.New("role configuration")

// Grant gives the members of one group a role. Namespaces limits an auditor
// grant to sessions of those namespaces; it is refused on other roles.
type Grant struct {
	Group      string         `json:"group"`
	Role       principal.Role `json:"role"`
	Namespaces []string       `json:"namespaces,omitempty"`
}

// Roles maps groups to roles. The zero value grants nothing.
type Roles struct {
	Grants []Grant `json:"roles"`
}

// RolesFromGroups builds Roles from plain group lists, as the server's
// --admin-groups, --auditor-groups and --approver-groups flags give them.
func RolesFromGroups(admins, auditors, approvers []string) Roles {
	var r Roles
	add := func(groups []string, role principal.Role) {
		for _, g := range groups {
			if g != "" {
				r.Grants = append(r.Grants, Grant{Group: g, Role: role})
			}
		}
	}
	add(admins, principal.RoleAdmin)
	add(auditors, principal.RoleAuditor)
	add(approvers, principal.RoleApprover)
	return r
}

// LoadRolesFile reads a YAML roles file:
//
//	roles:
//	  - group: platform
//	    role: admin
//	  - group: team-a-leads
//	    role: auditor
//	    namespaces: [team-a]
func LoadRolesFile(path string) (Roles, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Roles{}, fmt.Errorf("%w: %w", ErrRoles, err)
	}
	var r Roles
	if err := yaml.UnmarshalStrict(b, &r); err != nil {
		return Roles{}, fmt.Errorf("%w: %s: %w", ErrRoles, path, err)
	}
	if err := r.Validate(); err != nil {
		return Roles{}, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// Merge returns r with the grants of o appended.
func (r Roles) Merge(o Roles) Roles {
	return Roles{Grants: append(slices.Clone(r.Grants), o.Grants...)}
}

// Validate checks every grant.
func (r Roles) Validate() error {
	for i, g := range r.Grants {
		if g.Group == "" {
			return fmt.Errorf("%w: grant %d: empty group", ErrRoles, i)
		}
		switch g.Role {
		case principal.RoleAdmin, principal.RoleApprover:
			if len(g.Namespaces) > 0 {
				return fmt.Errorf("%w: grant %d (%s): namespaces only limit the auditor role", ErrRoles, i, g.Group)
			}
		case principal.RoleAuditor:
			if slices.Contains(g.Namespaces, "") {
				return fmt.Errorf("%w: grant %d (%s): empty namespace", ErrRoles, i, g.Group)
			}
		default:
			return fmt.Errorf("%w: grant %d (%s): role %q: want admin, auditor or approver", ErrRoles, i, g.Group, g.Role)
		}
	}
	return nil
}

// Apply sets p's roles and auditor namespaces from p's groups. An
// unlimited auditor grant wins over limited ones; limited grants add up.
func (r Roles) Apply(p principal.Principal) principal.Principal {
	p.Roles, p.Namespaces = nil, nil
	unlimited := false
	var namespaces []string
	for _, g := range r.Grants {
		if !slices.Contains(p.Groups, g.Group) {
			continue
		}
		if !slices.Contains(p.Roles, g.Role) {
			p.Roles = append(p.Roles, g.Role)
		}
		if g.Role == principal.RoleAuditor {
			if len(g.Namespaces) == 0 {
				unlimited = true
			}
			for _, ns := range g.Namespaces {
				if !slices.Contains(namespaces, ns) {
					namespaces = append(namespaces, ns)
				}
			}
		}
	}
	if !unlimited {
		p.Namespaces = namespaces
	}
	return p
}
