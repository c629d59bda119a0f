// Package oidctest runs an OpenID Connect issuer for tests: discovery and a
// JWKS served over plain HTTP on loopback, RSA keys made in the test, key
// rotation, and tokens signed with any key (or none) so tests can hand a
// verifier both good tokens and every kind of bad one.
package oidctest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// ClientID is the audience Token uses unless the claims say otherwise.
const ClientID = "chaperone-test"

// Key is one signing key of the issuer.
type Key struct {
	ID      string
	private *rsa.PrivateKey
}

// Issuer is a running test issuer.
type Issuer struct {
	// URL is the issuer URL, http://127.0.0.1:PORT.
	URL string

	t      testing.TB
	srv    *httptest.Server
	mu     sync.Mutex
	keys   []*Key // published in the JWKS
	next   int
	fetchs int
}

// NewIssuer starts an issuer over plain HTTP with one published key; it
// stops when the test ends.
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	return newIssuer(t, httptest.NewServer)
}

// NewTLSIssuer is NewIssuer over HTTPS with a certificate from a test CA;
// CACertPEM returns that CA.
func NewTLSIssuer(t testing.TB) *Issuer {
	t.Helper()
	return newIssuer(t, httptest.NewTLSServer)
}

func newIssuer(t testing.TB, start func(http.Handler) *httptest.Server) *Issuer {
	is := &Issuer{t: t}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", is.discovery)
	mux.HandleFunc("GET /keys", is.jwks)
	is.srv = start(mux)
	t.Cleanup(is.srv.Close)
	is.URL = is.srv.URL
	is.keys = []*Key{is.NewKey()}
	return is
}

// CACertPEM returns the PEM certificate that signs a TLS issuer's
// serving certificate; nil for a plain HTTP issuer.
func (is *Issuer) CACertPEM() []byte {
	if is.srv.TLS == nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: is.srv.Certificate().Raw})
}

// NewKey makes a key without publishing it.
func (is *Issuer) NewKey() *Key {
	is.t.Helper()
	pk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		is.t.Fatalf("oidctest: generate key: %v", err)
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	is.next++
	return &Key{ID: "key-" + strconv.Itoa(is.next), private: pk}
}

// Current is the key Token signs with: the newest published one.
func (is *Issuer) Current() *Key {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.keys[len(is.keys)-1]
}

// Publish replaces the published key set.
func (is *Issuer) Publish(keys ...*Key) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.keys = keys
}

// Rotate publishes a new key in place of all others and returns it.
func (is *Issuer) Rotate() *Key {
	k := is.NewKey()
	is.Publish(k)
	return k
}

// JWKSFetches counts the JWKS requests served.
func (is *Issuer) JWKSFetches() int {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.fetchs
}

// Claims returns valid claims for subject: this issuer, ClientID, issued
// now, expiring in an hour. Tests change what they need.
func (is *Issuer) Claims(subject string, groups ...string) map[string]any {
	now := time.Now()
	c := map[string]any{
		"iss":   is.URL,
		"aud":   ClientID,
		"sub":   subject,
		"email": subject + "@example.com",
		"iat":   now.Unix(),
		"exp":   now.Add(time.Hour).Unix(),
	}
	if groups != nil {
		c["groups"] = groups
	}
	return c
}

// Token signs valid claims for subject with the current key.
func (is *Issuer) Token(subject string, groups ...string) string {
	return is.Sign(is.Current(), is.Claims(subject, groups...))
}

// Sign signs claims with k (RS256).
func (is *Issuer) Sign(k *Key, claims map[string]any) string {
	is.t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: k.private},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", k.ID))
	if err != nil {
		is.t.Fatalf("oidctest: signer: %v", err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		is.t.Fatalf("oidctest: claims: %v", err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		is.t.Fatalf("oidctest: sign: %v", err)
	}
	tok, err := obj.CompactSerialize()
	if err != nil {
		is.t.Fatalf("oidctest: serialize: %v", err)
	}
	return tok
}

// Unsigned returns claims as an alg "none" token.
func (is *Issuer) Unsigned(claims map[string]any) string {
	is.t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		is.t.Fatalf("oidctest: claims: %v", err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc(payload) + "."
}

func (is *Issuer) discovery(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"issuer":                                is.URL,
		"jwks_uri":                              is.URL + "/keys",
		"authorization_endpoint":                is.URL + "/auth",
		"token_endpoint":                        is.URL + "/token",
		"response_types_supported":              []string{"id_token"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
	})
}

func (is *Issuer) jwks(w http.ResponseWriter, r *http.Request) {
	is.mu.Lock()
	is.fetchs++
	set := jose.JSONWebKeySet{}
	for _, k := range is.keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.private.PublicKey, KeyID: k.ID, Algorithm: string(jose.RS256), Use: "sig"})
	}
	is.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(set)
}
