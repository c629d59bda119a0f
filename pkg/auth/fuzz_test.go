package auth_test

import (
	"testing"

	"github.com/chaperone-dev/chaperone/pkg/auth"
	"github.com/chaperone-dev/chaperone/pkg/auth/oidctest"
)

// FuzzVerify feeds arbitrary strings as bearer tokens: none may panic, and
// none but the seeded valid token may pass.
func FuzzVerify(f *testing.F) {
	is := oidctest.NewIssuer(f)
	v, err := auth.NewVerifier(f.Context(), auth.Options{Issuer: is.URL, ClientID: oidctest.ClientID})
	if err != nil {
		f.Fatal(err)
	}
	good := is.Token("ann")
	f.Add(good)
	f.Add(is.Unsigned(is.Claims("ann")))
	f.Add("")
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJSUzI1NiJ9..")
	f.Add("eyJhbGciOiJIUzI1NiJ9.e30.c2ln")
	f.Fuzz(func(t *testing.T, tok string) {
		p, err := v.Verify(t.Context(), tok)
		if err == nil && tok != good {
			t.Fatalf("accepted %q as %+v", tok, p)
		}
	})
}
