package auth

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
)

// bearerTransport sends the token in file with every request. The file is
// read each time because a projected service-account token is rotated in
// place by the kubelet.
type bearerTransport struct {
	file string
	next http.RoundTripper
}

func (b *bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	tok, err := readBearer(b.file)
	if err != nil {
		return nil, err
	}
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+tok)
	return b.next.RoundTrip(r)
}

// readBearer reads a token file, trimmed of surrounding white space.
func readBearer(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("oidc bearer token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("oidc bearer token file %s: %w", file, errors.New("empty"))
	}
	return tok, nil
}
