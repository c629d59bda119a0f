package gate

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// MaxTokenSize bounds a token file.
const MaxTokenSize = 64 << 10

// recheckEvery is how often the token file is looked at again: projected
// tokens are rotated by the kubelet by swapping a symlink, and an old
// token stays valid for a while after its successor appears.
const recheckEvery = time.Second

// ErrNoToken is returned when the service-account token cannot be read.
var ErrNoToken = errors.New("service-account token unavailable")

// Credentials broker the pod's service-account token: the sidecar alone
// reads the real token (File); the agent holds Placeholder, which the
// sidecar swaps for the token on requests to the API server and refuses
// everywhere else.
type Credentials struct {
	// Placeholder is the token the agent containers hold.
	Placeholder string
	// File is the projected service-account token, re-read when it
	// changes.
	File string
	// Fallback names the identity when the token is not a JWT with a
	// subject (e.g. "system:serviceaccount:NS:NAME").
	Fallback string

	now func() time.Time

	mu      sync.Mutex
	checked time.Time
	stamp   fileStamp
	token   string
	as      string
}

type fileStamp struct {
	mod  time.Time
	size int64
	ino  uint64
}

// NewCredentials checks the settings and reads the token once, so that a
// missing file is reported at start.
func NewCredentials(placeholder, file, fallback string) (*Credentials, error) {
	if len(placeholder) < 8 {
		return nil, errors.New("credentials: the placeholder must be at least 8 characters")
	}
	if file == "" {
		return nil, errors.New("credentials: no token file")
	}
	c := &Credentials{Placeholder: placeholder, File: file, Fallback: fallback, now: time.Now}
	if _, _, err := c.Token(); err != nil {
		return nil, err
	}
	return c, nil
}

// Token returns the current token and the identity it stands for.
func (c *Credentials) Token() (token, as string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if c.token != "" && now.Sub(c.checked) < recheckEvery {
		return c.token, c.as, nil
	}
	c.checked = now
	fi, err := os.Stat(c.File)
	if err != nil {
		if c.token != "" {
			return c.token, c.as, nil // keep the last one while the file is swapped
		}
		return "", "", fmt.Errorf("%w: %w", ErrNoToken, err)
	}
	st := stampOf(fi)
	if c.token != "" && st == c.stamp {
		return c.token, c.as, nil
	}
	if fi.Size() > MaxTokenSize {
		return "", "", fmt.Errorf("%w: %s is larger than %d bytes", ErrNoToken, c.File, MaxTokenSize)
	}
	b, err := os.ReadFile(c.File)
	if err != nil {
		if c.token != "" {
			return c.token, c.as, nil
		}
		return "", "", fmt.Errorf("%w: %w", ErrNoToken, err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" || strings.ContainsAny(tok, " \t\r\n\x00") {
		return "", "", fmt.Errorf("%w: %s holds no single token", ErrNoToken, c.File)
	}
	c.token, c.stamp = tok, st
	c.as = bearerSubject("Bearer " + tok)
	if c.as == "" {
		c.as = c.Fallback
	}
	return c.token, c.as, nil
}

// carries reports whether a request's headers carry the placeholder, and
// in which header.
func (c *Credentials) carries(h map[string]string) (string, bool) {
	for k, v := range h {
		if strings.Contains(v, c.Placeholder) {
			return http.CanonicalHeaderKey(k), true
		}
	}
	return "", false
}

// bearerSubject returns the subject of a bearer JWT (its "sub" claim, read
// without verification: it only names the identity in the record), or ""
// when the header holds no such token.
func bearerSubject(auth string) string {
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok {
		return ""
	}
	parts := strings.Split(strings.TrimSpace(tok), ".")
	if len(parts) != 3 || len(parts[1]) > MaxTokenSize {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var claims struct {
		Sub string `json:"sub"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return ""
	}
	return claims.Sub
}
