package principal

import "slices"

// Role is what a principal may do on the server.
type Role string

// The roles. Admin implies the others.
const (
	// RoleAuditor reads sessions, optionally limited to namespaces.
	RoleAuditor Role = "auditor"
	// RoleApprover lists and answers approval requests.
	RoleApprover Role = "approver"
	// RoleAdmin may do everything.
	RoleAdmin Role = "admin"
)

// Has reports whether p holds role r, directly or through admin.
func (p Principal) Has(r Role) bool {
	return slices.Contains(p.Roles, r) || slices.Contains(p.Roles, RoleAdmin)
}

// CanSeeNamespace reports whether p may read sessions of namespace ns:
// admins and unlimited auditors see all, limited auditors only theirs.
// A session outside Kubernetes has the empty namespace, which only
// unlimited readers see.
func (p Principal) CanSeeNamespace(ns string) bool {
	if slices.Contains(p.Roles, RoleAdmin) {
		return true
	}
	if !slices.Contains(p.Roles, RoleAuditor) {
		return false
	}
	return len(p.Namespaces) == 0 || (ns != "" && slices.Contains(p.Namespaces, ns))
}

// Limited reports whether p's reading is limited to some namespaces.
func (p Principal) Limited() bool {
	return !slices.Contains(p.Roles, RoleAdmin) && len(p.Namespaces) > 0
}
