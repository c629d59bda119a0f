package natsauth

import (
	"errors"
	"testing"

	"github.com/chaperone-dev/chaperone/pkg/auth"
)

// FuzzPeekIssuer: any connect token gives an issuer or a malformed-token
// refusal, never a panic.
func FuzzPeekIssuer(f *testing.F) {
	f.Add("eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL2sifQ.c2ln")
	f.Add("eyJhbGciOiJub25lIn0.eyJpc3MiOiIifQ.")
	f.Add("a.b.c")
	f.Add("garbage")
	f.Add("..")
	f.Fuzz(func(t *testing.T, raw string) {
		iss, err := peekIssuer(raw)
		if err != nil {
			if !errors.Is(err, auth.ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		if iss == "" {
			t.Fatal("empty issuer accepted")
		}
	})
}
