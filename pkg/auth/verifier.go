package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/chaperone-dev/chaperone/pkg/principal"
)

// Reasons a token is refused. Verify wraps one of them with detail; the
// API answers 401 for all of them.
var (
	ErrNoToken      = errors.New("no bearer token")
	ErrMalformed    = errors.New("malformed token")
	ErrUnsigned     = errors.New("unsigned token")
	ErrExpired      = errors.New("token expired")
	ErrNotYetValid  = errors.New("token not valid yet")
	ErrAudience     = errors.New("token for another audience")
	ErrIssuer       = errors.New("token from another issuer")
	ErrSignature    = errors.New("token signature not valid")
	ErrInvalidToken = errors.New("invalid token")
	ErrNoSubject    = errors.New("token without subject")
)

// DefaultGroupsClaim is the claim read for groups when Options.GroupsClaim
// is empty.
const DefaultGroupsClaim = "groups"

// DefaultKeyMaxAge is how long a fetched key set is trusted before it is
// fetched again.
const DefaultKeyMaxAge = time.Hour

// Options configures a Verifier.
type Options struct {
	// Issuer is the OIDC issuer URL; discovery reads
	// Issuer/.well-known/openid-configuration. Required.
	Issuer string
	// ClientID is the audience tokens must carry. Required.
	ClientID string
	// GroupsClaim names the claim with the person's groups, a list of
	// strings or one string. Empty means DefaultGroupsClaim.
	GroupsClaim string
	// Roles maps groups to roles.
	Roles Roles
	// HTTPClient fetches discovery and keys. Nil uses a client with the
	// system roots plus CAFile's, and a timeout.
	HTTPClient *http.Client
	// CAFile is a PEM bundle of extra roots for the issuer's TLS
	// certificate (an in-cluster Dex, say). Ignored with HTTPClient.
	CAFile string
	// KeyMaxAge bounds how long a removed key keeps being trusted: go-oidc
	// refetches the key set when a token names an unknown key, and the
	// Verifier also drops its cache after KeyMaxAge. Zero means
	// DefaultKeyMaxAge.
	KeyMaxAge time.Duration
	// Logger receives discovery and key-set messages. Nil discards.
	Logger *slog.Logger
	// DiscoveryURL, when set, is where discovery is read instead of
	// Issuer: a Kubernetes API server names an issuer (say
	// https://kubernetes.default.svc.cluster.local) that is not always
	// reachable under that name. Tokens must still carry Issuer.
	DiscoveryURL string
	// BearerTokenFile, when set, is read on every discovery and key-set
	// request and sent as a bearer token: a Kubernetes API server serves
	// its discovery only to authenticated callers unless anonymous
	// discovery is bound. Ignored with HTTPClient.
	BearerTokenFile string
	// KeySet, when set, verifies signatures in process and skips discovery
	// (an issuer of this process's own, as in one-machine mode).
	KeySet oidc.KeySet
	// SigningAlgs are the algorithms accepted with KeySet; empty means
	// RS256 and ES256.
	SigningAlgs []string
}

// Verifier turns bearer tokens into principals.
type Verifier struct {
	verifier    *oidc.IDTokenVerifier
	groupsClaim string
	roles       Roles
}

// NewVerifier runs OIDC discovery against the issuer and returns a
// Verifier. ctx bounds discovery; key fetches later use the HTTP client
// without ctx's deadline.
func NewVerifier(ctx context.Context, o Options) (*Verifier, error) {
	if o.Issuer == "" || o.ClientID == "" {
		return nil, fmt.Errorf("oidc: issuer and client id are required")
	}
	if err := o.Roles.Validate(); err != nil {
		return nil, err
	}
	if o.GroupsClaim == "" {
		o.GroupsClaim = DefaultGroupsClaim
	}
	if o.KeyMaxAge <= 0 {
		o.KeyMaxAge = DefaultKeyMaxAge
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.KeySet != nil {
		algs := o.SigningAlgs
		if len(algs) == 0 {
			algs = []string{oidc.RS256, oidc.ES256}
		}
		return &Verifier{
			verifier: oidc.NewVerifier(o.Issuer, o.KeySet, &oidc.Config{
				ClientID:             o.ClientID,
				SupportedSigningAlgs: algs,
			}),
			groupsClaim: o.GroupsClaim,
			roles:       o.Roles,
		}, nil
	}
	hc := o.HTTPClient
	if hc == nil {
		var err error
		if hc, err = httpClient(o.CAFile, o.BearerTokenFile); err != nil {
			return nil, err
		}
	}
	dctx := oidc.ClientContext(ctx, hc)
	if o.DiscoveryURL != "" && o.DiscoveryURL != o.Issuer {
		// go-oidc then reads discovery at DiscoveryURL and still checks
		// that the document and the tokens name Issuer.
		dctx = oidc.InsecureIssuerURLContext(dctx, o.Issuer)
	} else {
		o.DiscoveryURL = o.Issuer
	}
	provider, err := oidc.NewProvider(dctx, o.DiscoveryURL)
	if err != nil {
		return nil, fmt.Errorf("oidc discovery %s: %w", o.Issuer, err)
	}
	var meta struct {
		JWKSURL string   `json:"jwks_uri"`
		Algs    []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := provider.Claims(&meta); err != nil {
		return nil, fmt.Errorf("oidc discovery %s: %w", o.Issuer, err)
	}
	if meta.JWKSURL == "" {
		return nil, fmt.Errorf("oidc discovery %s: no jwks_uri", o.Issuer)
	}
	keys := &keySet{
		ctx:    oidc.ClientContext(context.WithoutCancel(ctx), hc),
		url:    meta.JWKSURL,
		maxAge: o.KeyMaxAge,
		now:    time.Now,
	}
	algs := make([]string, 0, len(meta.Algs))
	for _, a := range meta.Algs {
		if a != "" && !strings.EqualFold(a, "none") {
			algs = append(algs, a)
		}
	}
	log.Info("oidc issuer discovered", slog.String("issuer", o.Issuer),
		slog.String("jwks_uri", meta.JWKSURL), slog.Any("algs", algs))
	return &Verifier{
		verifier: oidc.NewVerifier(o.Issuer, keys, &oidc.Config{
			ClientID:             o.ClientID,
			SupportedSigningAlgs: algs,
		}),
		groupsClaim: o.GroupsClaim,
		roles:       o.Roles,
	}, nil
}

// Verify checks raw, a JWT ID token, and returns its principal with roles.
// Errors wrap one of the Err* reasons above.
func (v *Verifier) Verify(ctx context.Context, raw string) (principal.Principal, error) {
	tok, err := v.Token(ctx, raw)
	if err != nil {
		return principal.Principal{}, err
	}
	var claims map[string]json.RawMessage
	if err := tok.Claims(&claims); err != nil {
		return principal.Principal{}, fmt.Errorf("%w: claims: %w", ErrMalformed, err)
	}
	p := principal.Principal{Subject: tok.Subject}
	if c, ok := claims["email"]; ok {
		_ = json.Unmarshal(c, &p.Email)
	}
	groups, err := parseGroups(claims[v.groupsClaim])
	if err != nil {
		return principal.Principal{}, fmt.Errorf("%w: claim %q: %w", ErrMalformed, v.groupsClaim, err)
	}
	p.Groups = groups
	return v.roles.Apply(p), nil
}

// Token checks raw, a signed JWT, the way Verify does (signature, issuer,
// audience, expiry, subject) and returns it for callers that read claims
// of their own. Errors wrap one of the Err* reasons above.
func (v *Verifier) Token(ctx context.Context, raw string) (*oidc.IDToken, error) {
	if raw == "" {
		return nil, ErrNoToken
	}
	if err := precheck(raw); err != nil {
		return nil, err
	}
	tok, err := v.verifier.Verify(ctx, raw)
	if err != nil {
		return nil, classify(err)
	}
	if tok.Subject == "" {
		return nil, ErrNoSubject
	}
	return tok, nil
}

// parseGroups reads a groups claim: absent, a list of strings, or one
// string.
func parseGroups(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err == nil {
		return list, nil
	}
	var one string
	if err := json.Unmarshal(raw, &one); err != nil {
		return nil, errors.New("want a string or a list of strings")
	}
	return []string{one}, nil
}

// precheck refuses what is plainly not a signed JWT with a reason of its
// own; go-oidc would refuse it too, with a vaguer one.
func precheck(raw string) error {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return fmt.Errorf("%w: want three dot-separated parts, got %d", ErrMalformed, len(parts))
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return fmt.Errorf("%w: header: %w", ErrMalformed, err)
	}
	var h struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(hb, &h); err != nil {
		return fmt.Errorf("%w: header: %w", ErrMalformed, err)
	}
	if h.Alg == "" || strings.EqualFold(h.Alg, "none") || parts[2] == "" {
		return fmt.Errorf("%w: alg %q", ErrUnsigned, h.Alg)
	}
	return nil
}

// classify maps a go-oidc error to a reason. go-oidc types only expiry;
// the rest are told apart by message, and anything unknown is still a
// refusal.
func classify(err error) error {
	var exp *oidc.TokenExpiredError
	msg := err.Error()
	switch {
	case errors.As(err, &exp):
		return fmt.Errorf("%w: expired at %s", ErrExpired, exp.Expiry.UTC().Format(time.RFC3339))
	case strings.Contains(msg, "malformed jwt"):
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	case strings.Contains(msg, "unexpected signature algorithm"):
		return fmt.Errorf("%w: %w", ErrSignature, err)
	case strings.Contains(msg, "signature"):
		return fmt.Errorf("%w: %w", ErrSignature, err)
	case strings.Contains(msg, "different provider"):
		return fmt.Errorf("%w: %w", ErrIssuer, err)
	case strings.Contains(msg, "expected audience"):
		return fmt.Errorf("%w: %w", ErrAudience, err)
	case strings.Contains(msg, "not before"):
		return fmt.Errorf("%w: %w", ErrNotYetValid, err)
	default:
		return fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
}

// keySet is an oidc.KeySet over a go-oidc RemoteKeySet that is replaced
// after maxAge, so a key the issuer removed stops being trusted even when
// no token with a new key comes along to trigger a refetch.
type keySet struct {
	ctx    context.Context
	url    string
	maxAge time.Duration
	now    func() time.Time

	mu      sync.Mutex
	current *oidc.RemoteKeySet
	made    time.Time
}

func (k *keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	k.mu.Lock()
	if k.current == nil || k.now().Sub(k.made) > k.maxAge {
		k.current = oidc.NewRemoteKeySet(k.ctx, k.url)
		k.made = k.now()
	}
	cur := k.current
	k.mu.Unlock()
	return cur.VerifySignature(ctx, jwt)
}

// fetchTimeout bounds one discovery or key-set request.
const fetchTimeout = 30 * time.Second

// httpClient returns the client for the issuer: system roots plus those in
// caFile, and the bearer token in tokenFile when one is given.
func httpClient(caFile, tokenFile string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("oidc ca file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("oidc ca file %s: no PEM certificates", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	var rt http.RoundTripper = tr
	if tokenFile != "" {
		if _, err := readBearer(tokenFile); err != nil {
			return nil, err
		}
		rt = &bearerTransport{file: tokenFile, next: tr}
	}
	return &http.Client{Transport: rt, Timeout: fetchTimeout}, nil
}
