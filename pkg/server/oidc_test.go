package server

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chaperone-dev/chaperone/pkg/auth/oidctest"
	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/natsbus"
	"github.com/chaperone-dev/chaperone/pkg/store"
)

// getAuth performs a GET with a bearer token (none when empty).
func getAuth(tb testing.TB, url, token string) (int, string, http.Header) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error(), nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// loopbackURL turns the advertised address of a server listening on all
// interfaces into a loopback URL, so the test only talks to loopback.
func loopbackURL(tb testing.TB, advertised string) string {
	tb.Helper()
	u, err := url.Parse(advertised)
	if err != nil {
		tb.Fatal(err)
	}
	return "http://" + net.JoinHostPort("127.0.0.1", u.Port())
}

func TestRunOIDC(t *testing.T) {
	is := oidctest.NewIssuer(t)
	dir := t.TempDir()
	rolesFile := filepath.Join(dir, "roles.yaml")
	if err := os.WriteFile(rolesFile, []byte("roles:\n  - group: team-a\n    role: auditor\n    namespaces: [team-a]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := start(t, Config{
		DataDir: filepath.Join(dir, "data"),
		// Not loopback: allowed because people authenticate.
		HTTPAddr:      "0.0.0.0:0",
		NATSAddr:      "127.0.0.1:0",
		OIDCIssuer:    is.URL,
		OIDCClientID:  oidctest.ClientID,
		AuditorGroups: []string{"auditors"},
		AdminGroups:   []string{"admins"},
		RolesFile:     rolesFile,
	})
	defer s.stop(t)
	base := loopbackURL(t, s.addrs.HTTP)

	js := jsFor(t, s.addrs.NATS)
	for i, ns := range []string{"team-a", "team-b"} {
		e := newEvent("sess-"+ns, 1)
		e.Identity = &event.Identity{Namespace: ns, Pod: "agent-" + ns}
		b, err := event.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(t.Context(), natsbus.EventSubject(e.Session), b, jetstream.WithMsgID(e.ID)); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	auditor := is.Token("ann", "auditors")
	waitFor(t, "both sessions listed", func() bool {
		code, body, _ := getAuth(t, base+"/api/v1/sessions", auditor)
		return code == http.StatusOK && strings.Contains(body, "sess-team-a") && strings.Contains(body, "sess-team-b")
	})

	if code, body, _ := getAuth(t, base+"/healthz", ""); code != http.StatusOK {
		t.Errorf("/healthz without token: %d %s", code, body)
	}
	code, body, hdr := getAuth(t, base+"/api/v1/sessions", "")
	if code != http.StatusUnauthorized || strings.Contains(body, "sess-") || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("no token: %d %s", code, body)
	}
	if code, body, _ := getAuth(t, base+"/api/v1/sessions", is.Sign(is.NewKey(), is.Claims("ann", "admins"))); code != http.StatusUnauthorized {
		t.Errorf("token with a foreign key: %d %s", code, body)
	}
	if code, body, _ := getAuth(t, base+"/api/v1/sessions", is.Token("nobody", "other")); code != http.StatusForbidden {
		t.Errorf("no role: %d %s", code, body)
	}
	var info struct {
		LocalMode bool `json:"local_mode"`
	}
	if code, body, _ := getAuth(t, base+"/api/v1/info", is.Token("nobody")); code != http.StatusOK || json.Unmarshal([]byte(body), &info) != nil || info.LocalMode {
		t.Errorf("info: %d %s", code, body)
	}

	teamA := is.Token("bo", "team-a")
	code, body, _ = getAuth(t, base+"/api/v1/sessions", teamA)
	var page store.SessionPage
	if code != http.StatusOK || json.Unmarshal([]byte(body), &page) != nil || len(page.Sessions) != 1 || page.Sessions[0].ID != "sess-team-a" {
		t.Errorf("team-a auditor list: %d %s", code, body)
	}
	if code, _, _ := getAuth(t, base+"/api/v1/sessions/sess-team-b/events", teamA); code != http.StatusNotFound {
		t.Errorf("team-a auditor reads team-b events: %d", code)
	}
	if code, _, _ := getAuth(t, base+"/api/v1/sessions/sess-team-a/verify", teamA); code != http.StatusOK {
		t.Errorf("team-a auditor verifies team-a: %d", code)
	}

	code, body, _ = getAuth(t, base+"/metrics", "")
	if code != http.StatusOK || !strings.Contains(body, `chaperone_api_access_total{code="200",method="GET",role="auditor",route="/api/v1/sessions"}`) {
		t.Errorf("access metric missing: %d", code)
	}
	if strings.Contains(body, "ann@example.com") {
		t.Error("metrics name a person")
	}
}

func TestRunOIDCIssuerDown(t *testing.T) {
	// Discovery fails: the server does not start.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + ln.Addr().String()
	ln.Close()
	err = Run(t.Context(), Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0",
		OIDCIssuer: issuer, OIDCClientID: "c"}, testLogger())
	if err == nil || !strings.Contains(err.Error(), "oidc discovery") {
		t.Fatalf("run with issuer down: %v", err)
	}
}

func TestRunOIDCOverTLS(t *testing.T) {
	is := oidctest.NewTLSIssuer(t)
	dir := t.TempDir()
	ca := filepath.Join(dir, "issuer-ca.pem")
	if err := os.WriteFile(ca, is.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	s := start(t, Config{DataDir: filepath.Join(dir, "data"), HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0",
		OIDCIssuer: is.URL, OIDCClientID: oidctest.ClientID, OIDCCAFile: ca, AdminGroups: []string{"admins"}})
	defer s.stop(t)
	if code, body, _ := getAuth(t, s.addrs.HTTP+"/api/v1/sessions", is.Token("ann", "admins")); code != http.StatusOK {
		t.Fatalf("admin over an https issuer: %d %s", code, body)
	}
}
