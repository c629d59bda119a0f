package principal

import "testing"

func TestRoles(t *testing.T) {
	tests := []struct {
		name    string
		p       Principal
		has     map[Role]bool
		see     map[string]bool
		limited bool
	}{
		{"nobody", Principal{}, map[Role]bool{RoleAuditor: false, RoleAdmin: false}, map[string]bool{"a": false, "": false}, false},
		{"admin", Principal{Roles: []Role{RoleAdmin}, Namespaces: []string{"a"}},
			map[Role]bool{RoleAuditor: true, RoleApprover: true, RoleAdmin: true}, map[string]bool{"b": true, "": true}, false},
		{"auditor", Principal{Roles: []Role{RoleAuditor}}, map[Role]bool{RoleAuditor: true, RoleApprover: false}, map[string]bool{"b": true, "": true}, false},
		{"limited auditor", Principal{Roles: []Role{RoleAuditor}, Namespaces: []string{"a"}},
			map[Role]bool{RoleAuditor: true, RoleAdmin: false}, map[string]bool{"a": true, "b": false, "": false}, true},
		{"approver", Principal{Roles: []Role{RoleApprover}}, map[Role]bool{RoleApprover: true, RoleAuditor: false}, map[string]bool{"a": false}, false},
		{"local", Local(), map[Role]bool{RoleAdmin: true, RoleAuditor: true}, map[string]bool{"a": true}, false},
	}
	for _, tc := range tests {
		for r, want := range tc.has {
			if got := tc.p.Has(r); got != want {
				t.Errorf("%s: Has(%s) = %v", tc.name, r, got)
			}
		}
		for ns, want := range tc.see {
			if got := tc.p.CanSeeNamespace(ns); got != want {
				t.Errorf("%s: CanSeeNamespace(%q) = %v", tc.name, ns, got)
			}
		}
		if got := tc.p.Limited(); got != tc.limited {
			t.Errorf("%s: Limited = %v", tc.name, got)
		}
	}
}
