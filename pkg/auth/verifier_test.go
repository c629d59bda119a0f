package auth_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/auth"
	"github.com/chaperone-dev/chaperone/pkg/auth/oidctest"
	"github.com/chaperone-dev/chaperone/pkg/principal"
)

func newVerifier(t *testing.T, is *oidctest.Issuer, roles auth.Roles) *auth.Verifier {
	t.Helper()
	v, err := auth.NewVerifier(t.Context(), auth.Options{Issuer: is.URL, ClientID: oidctest.ClientID, Roles: roles})
	if err != nil {
		t.Fatalf("new verifier: %v", err)
	}
	return v
}

func TestVerifyGood(t *testing.T) {
	is := oidctest.NewIssuer(t)
	v := newVerifier(t, is, auth.RolesFromGroups([]string{"ops"}, []string{"audit"}, nil))
	p, err := v.Verify(t.Context(), is.Token("ann", "audit", "dev"))
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if p.Subject != "ann" || p.Email != "ann@example.com" || !slices.Equal(p.Groups, []string{"audit", "dev"}) {
		t.Errorf("principal = %+v", p)
	}
	if !p.Has(principal.RoleAuditor) || p.Has(principal.RoleApprover) || p.Limited() {
		t.Errorf("roles = %v namespaces %v", p.Roles, p.Namespaces)
	}
	// A groups claim with one string.
	c := is.Claims("bo")
	c["groups"] = "ops"
	p, err = v.Verify(t.Context(), is.Sign(is.Current(), c))
	if err != nil || !p.Has(principal.RoleApprover) || !p.Has(principal.RoleAuditor) {
		t.Errorf("admin by string group: %+v %v", p, err)
	}
}

func TestVerifyRefuses(t *testing.T) {
	is := oidctest.NewIssuer(t)
	v := newVerifier(t, is, auth.Roles{})
	other := is.NewKey() // never published
	now := time.Now()
	with := func(k, val string) map[string]any {
		c := is.Claims("ann")
		c[k] = val
		return c
	}
	withT := func(k string, tm time.Time) map[string]any {
		c := is.Claims("ann")
		c[k] = tm.Unix()
		return c
	}
	good := is.Token("ann")
	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"missing", "", auth.ErrNoToken},
		{"garbage", "not a token", auth.ErrMalformed},
		{"garbage three parts", "a.b.c", auth.ErrMalformed},
		{"bad signature bytes", good[:len(good)-4] + "AAAA", auth.ErrSignature},
		{"expired", is.Sign(is.Current(), withT("exp", now.Add(-time.Minute))), auth.ErrExpired},
		{"not yet valid", is.Sign(is.Current(), withT("nbf", now.Add(time.Hour))), auth.ErrNotYetValid},
		{"wrong audience", is.Sign(is.Current(), with("aud", "someone-else")), auth.ErrAudience},
		{"wrong issuer", is.Sign(is.Current(), with("iss", "https://evil.example.com")), auth.ErrIssuer},
		{"alg none", is.Unsigned(is.Claims("ann")), auth.ErrUnsigned},
		{"wrong key", is.Sign(other, is.Claims("ann")), auth.ErrSignature},
		{"no subject", is.Sign(is.Current(), with("sub", "")), auth.ErrNoSubject},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := v.Verify(t.Context(), tc.token)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v (principal %+v)", err, tc.want, p)
			}
			if p.Subject != "" {
				t.Errorf("principal returned with error: %+v", p)
			}
		})
	}
}

func TestKeyRotation(t *testing.T) {
	is := oidctest.NewIssuer(t)
	v := newVerifier(t, is, auth.Roles{})
	old := is.Current()
	if _, err := v.Verify(t.Context(), is.Token("ann")); err != nil {
		t.Fatalf("first key: %v", err)
	}
	fresh := is.Rotate()
	if _, err := v.Verify(t.Context(), is.Sign(fresh, is.Claims("ann"))); err != nil {
		t.Fatalf("token with the new key after rotation: %v", err)
	}
	oldToken := is.Sign(old, is.Claims("ann"))
	if err := settled(t, v, oldToken, func(err error) bool { return err != nil }); !errors.Is(err, auth.ErrSignature) {
		t.Fatalf("token with the removed key: err = %v, want ErrSignature", err)
	}
	// Both published: both accepted.
	is.Publish(old, fresh)
	if err := settled(t, v, oldToken, func(err error) bool { return err == nil }); err != nil {
		t.Fatalf("old key published again: %v", err)
	}
}

// settled verifies token until done says the answer is the one expected,
// for at most a second, and returns the last error. go-oidc hands a
// refetched key set to the call that waited for it before it replaces its
// cache and lets the next refetch start: for a moment after a change of
// keys, a call may still see the set from before.
func settled(t *testing.T, v *auth.Verifier, token string, done func(error) bool) error {
	t.Helper()
	var err error
	for range 100 {
		if _, err = v.Verify(t.Context(), token); done(err) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
	return err
}

func TestKeyMaxAge(t *testing.T) {
	is := oidctest.NewIssuer(t)
	v, err := auth.NewVerifier(t.Context(), auth.Options{Issuer: is.URL, ClientID: oidctest.ClientID, KeyMaxAge: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	old := is.Current()
	if _, err := v.Verify(t.Context(), is.Token("ann")); err != nil {
		t.Fatal(err)
	}
	// The key is removed and no new-key token comes: the cache still
	// expires and the removed key is refused.
	is.Publish(is.NewKey())
	if _, err := v.Verify(t.Context(), is.Sign(old, is.Claims("ann"))); !errors.Is(err, auth.ErrSignature) {
		t.Fatalf("removed key after max age: err = %v", err)
	}
}

func TestNewVerifierErrors(t *testing.T) {
	is := oidctest.NewIssuer(t)
	for name, o := range map[string]auth.Options{
		"no issuer":      {ClientID: "x"},
		"no client":      {Issuer: is.URL},
		"issuer down":    {Issuer: "http://127.0.0.1:1", ClientID: "x"},
		"issuer differs": {Issuer: is.URL + "/", ClientID: "x"},
		"bad roles":      {Issuer: is.URL, ClientID: "x", Roles: auth.Roles{Grants: []auth.Grant{{Group: "g", Role: "root"}}}},
	} {
		if _, err := auth.NewVerifier(t.Context(), o); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestRoles(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "roles.yaml")
	body := `roles:
  - group: platform
    role: admin
  - group: team-a-leads
    role: auditor
    namespaces: [team-a]
  - group: team-b-leads
    role: auditor
    namespaces: [team-b]
  - group: security
    role: auditor
  - group: oncall
    role: approver
`
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	roles, err := auth.LoadRolesFile(file)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	tests := []struct {
		groups     []string
		roles      []principal.Role
		namespaces []string
		see        map[string]bool
	}{
		{nil, nil, nil, map[string]bool{"team-a": false}},
		{[]string{"platform"}, []principal.Role{principal.RoleAdmin}, nil, map[string]bool{"team-a": true, "": true}},
		{[]string{"team-a-leads"}, []principal.Role{principal.RoleAuditor}, []string{"team-a"}, map[string]bool{"team-a": true, "team-b": false, "": false}},
		{[]string{"team-a-leads", "team-b-leads"}, []principal.Role{principal.RoleAuditor}, []string{"team-a", "team-b"}, map[string]bool{"team-b": true, "team-c": false}},
		{[]string{"team-a-leads", "security"}, []principal.Role{principal.RoleAuditor}, nil, map[string]bool{"team-c": true, "": true}},
		{[]string{"oncall"}, []principal.Role{principal.RoleApprover}, nil, map[string]bool{"team-a": false}},
	}
	for _, tc := range tests {
		p := roles.Apply(principal.Principal{Subject: "x", Groups: tc.groups})
		if !slices.Equal(p.Roles, tc.roles) || !slices.Equal(p.Namespaces, tc.namespaces) {
			t.Errorf("groups %v: roles %v namespaces %v, want %v %v", tc.groups, p.Roles, p.Namespaces, tc.roles, tc.namespaces)
		}
		for ns, want := range tc.see {
			if got := p.CanSeeNamespace(ns); got != want {
				t.Errorf("groups %v: see %q = %v, want %v", tc.groups, ns, got, want)
			}
		}
	}

	for name, bad := range map[string]string{
		"unknown role":     "roles:\n  - group: g\n    role: root\n",
		"namespaced admin": "roles:\n  - group: g\n    role: admin\n    namespaces: [a]\n",
		"empty group":      "roles:\n  - role: admin\n",
		"unknown field":    "roles:\n  - group: g\n    role: admin\n    extra: 1\n",
		"not yaml":         "roles: [",
		"empty namespace":  "roles:\n  - group: g\n    role: auditor\n    namespaces: ['']\n",
	} {
		f := filepath.Join(dir, "bad.yaml")
		if err := os.WriteFile(f, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := auth.LoadRolesFile(f); !errors.Is(err, auth.ErrRoles) {
			t.Errorf("%s: err = %v, want ErrRoles", name, err)
		}
	}
	if _, err := auth.LoadRolesFile(filepath.Join(dir, "missing.yaml")); !errors.Is(err, auth.ErrRoles) {
		t.Errorf("missing file: %v", err)
	}
}

func TestTLSIssuerWithCAFile(t *testing.T) {
	is := oidctest.NewTLSIssuer(t)
	// Without the CA the issuer's certificate is not trusted.
	if _, err := auth.NewVerifier(t.Context(), auth.Options{Issuer: is.URL, ClientID: oidctest.ClientID}); err == nil {
		t.Fatal("untrusted issuer certificate accepted")
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, is.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(t.Context(), auth.Options{Issuer: is.URL, ClientID: oidctest.ClientID, CAFile: ca})
	if err != nil {
		t.Fatalf("with ca file: %v", err)
	}
	if _, err := v.Verify(t.Context(), is.Token("ann")); err != nil {
		t.Fatalf("verify over https: %v", err)
	}
	for name, file := range map[string]string{"missing": filepath.Join(t.TempDir(), "none.pem"), "not pem": ca + ".bad"} {
		_ = os.WriteFile(ca+".bad", []byte("nope"), 0o600)
		if _, err := auth.NewVerifier(t.Context(), auth.Options{Issuer: is.URL, ClientID: oidctest.ClientID, CAFile: file}); err == nil {
			t.Errorf("%s ca file accepted", name)
		}
	}
}
