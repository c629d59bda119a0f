package natsauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"

	"github.com/chaperone-dev/chaperone/pkg/auth"
	"github.com/chaperone-dev/chaperone/pkg/event"
)

// Names in the tokens a LocalIssuer mints. They follow the shape of a
// Kubernetes service-account token so the callout treats both alike.
const (
	// LocalIssuerName is the iss of minted tokens.
	LocalIssuerName = "chaperone-server-local"
	// LocalNamespace and LocalServiceAccount name the stand-in service
	// account of `chaperonectl run` sessions.
	LocalNamespace      = "local"
	LocalServiceAccount = "chaperonectl-run"
)

// Token lifetimes of a LocalIssuer.
const (
	DefaultLocalTTL = 24 * time.Hour
	MaxLocalTTL     = 7 * 24 * time.Hour
	minLocalTTL     = time.Minute
)

// ErrTTL is returned for a lifetime outside [1m, MaxLocalTTL].
var ErrTTL = errors.New("token lifetime out of range")

// LocalIssuer mints workload tokens for one-machine mode, where no
// Kubernetes issues them: the server is its own issuer, with an ECDSA key
// kept in a file so that tokens outlive a server restart.
type LocalIssuer struct {
	key      *ecdsa.PrivateKey
	kid      string
	audience string
	now      func() time.Time
}

// LoadLocalIssuer reads the key in path, or creates it (mode 0600) when the
// file does not exist. Tokens carry audience.
func LoadLocalIssuer(path, audience string) (*LocalIssuer, error) {
	if audience == "" {
		return nil, errors.New("local issuer: no audience")
	}
	key, err := readKey(path)
	if errors.Is(err, os.ErrNotExist) {
		key, err = createKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("local issuer: %w", err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("local issuer: %w", err)
	}
	sum := sha256.Sum256(der)
	return &LocalIssuer{key: key, kid: base64.RawURLEncoding.EncodeToString(sum[:12]), audience: audience, now: time.Now}, nil
}

func readKey(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "EC PRIVATE KEY" {
		return nil, fmt.Errorf("%s: no EC PRIVATE KEY block", path)
	}
	k, err := x509.ParseECPrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

func createKey(path string) (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("key dir: %w", err)
	}
	// O_EXCL: two servers on one data dir must not each write a key.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return readKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("write key: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("write key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("write key: %w", err)
	}
	return k, nil
}

// Mint returns a token for session that expires after ttl (zero means
// DefaultLocalTTL), shaped like a pod-bound service-account token whose
// pod UID is session.
func (l *LocalIssuer) Mint(session string, ttl time.Duration) (string, time.Time, error) {
	if err := event.ValidSession(session); err != nil {
		return "", time.Time{}, fmt.Errorf("mint: %w", err)
	}
	if ttl == 0 {
		ttl = DefaultLocalTTL
	}
	if ttl < minLocalTTL || ttl > MaxLocalTTL {
		return "", time.Time{}, fmt.Errorf("mint: %w: %s (want %s to %s)", ErrTTL, ttl, minLocalTTL, MaxLocalTTL)
	}
	now := l.now()
	exp := now.Add(ttl).Truncate(time.Second)
	claims := map[string]any{
		"iss": LocalIssuerName,
		"aud": []string{l.audience},
		"sub": saPrefix + LocalNamespace + ":" + LocalServiceAccount,
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": exp.Unix(),
		"kubernetes.io": kubeClaims{
			Namespace:      LocalNamespace,
			Pod:            &kubeRef{Name: "run-" + session, UID: session},
			ServiceAccount: &kubeRef{Name: LocalServiceAccount},
		},
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("mint: %w", err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: l.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", l.kid))
	if err != nil {
		return "", time.Time{}, fmt.Errorf("mint: %w", err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("mint: %w", err)
	}
	tok, err := obj.CompactSerialize()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("mint: %w", err)
	}
	return tok, exp, nil
}

// Verifier checks tokens of this issuer in process, with go-oidc like any
// other issuer's.
func (l *LocalIssuer) Verifier(ctx context.Context) (*auth.Verifier, error) {
	return auth.NewVerifier(ctx, auth.Options{
		Issuer:      LocalIssuerName,
		ClientID:    l.audience,
		KeySet:      &oidc.StaticKeySet{PublicKeys: []crypto.PublicKey{&l.key.PublicKey}},
		SigningAlgs: []string{oidc.ES256},
	})
}
