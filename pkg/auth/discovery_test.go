package auth_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/chaperone-dev/chaperone/pkg/auth"
	"github.com/chaperone-dev/chaperone/pkg/auth/oidctest"
)

// kubeIssuer is an issuer name that does not resolve, like a cluster's.
const kubeIssuer = "https://kubernetes.default.svc.cluster.local"

// apiServerLike serves is's discovery and keys the way a Kubernetes API
// server does: under another address than the issuer name, to callers
// with a bearer token only.
func apiServerLike(t *testing.T, is *oidctest.Issuer, bearer string) *httptest.Server {
	t.Helper()
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+bearer {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		resp, err := http.Get(is.URL + r.URL.Path)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if r.URL.Path == "/.well-known/openid-configuration" {
			var doc map[string]any
			_ = json.Unmarshal(body, &doc)
			doc["issuer"] = kubeIssuer
			doc["jwks_uri"] = srv.URL + "/keys"
			body, _ = json.Marshal(doc)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestVerifierDiscoveryURLAndBearer(t *testing.T) {
	is := oidctest.NewIssuer(t)
	api := apiServerLike(t, is, "server-sa-token")
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("server-sa-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	opts := auth.Options{Issuer: kubeIssuer, ClientID: "chaperone", DiscoveryURL: api.URL, BearerTokenFile: tokenFile}
	v, err := auth.NewVerifier(t.Context(), opts)
	if err != nil {
		t.Fatalf("discovery through the API server: %v", err)
	}
	claims := is.Claims("system:serviceaccount:agents:coder")
	claims["iss"], claims["aud"] = kubeIssuer, []string{"chaperone"}
	tok, err := v.Token(t.Context(), is.Sign(is.Current(), claims))
	if err != nil || tok.Subject != "system:serviceaccount:agents:coder" {
		t.Fatalf("token: %v %v", tok, err)
	}
	// The issuer's own name in the token is still checked.
	claims["iss"] = api.URL
	if _, err := v.Token(t.Context(), is.Sign(is.Current(), claims)); !errors.Is(err, auth.ErrIssuer) {
		t.Fatalf("token naming the discovery URL as issuer: %v", err)
	}
	// Without the bearer token the API server refuses discovery.
	opts.BearerTokenFile = ""
	if _, err := auth.NewVerifier(t.Context(), opts); err == nil {
		t.Fatal("discovery without a bearer token succeeded")
	}
	opts.BearerTokenFile = filepath.Join(t.TempDir(), "missing")
	if _, err := auth.NewVerifier(t.Context(), opts); err == nil {
		t.Fatal("missing bearer token file accepted")
	}
}
