package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/auth"
	"github.com/chaperone-dev/chaperone/pkg/auth/oidctest"
)

// recordingMinter mints fake tokens and remembers for whom.
type recordingMinter struct{ sessions []string }

func (m *recordingMinter) Mint(session string, ttl time.Duration) (string, time.Time, error) {
	if ttl > 0 && ttl < time.Minute {
		return "", time.Time{}, errors.New("token lifetime out of range")
	}
	m.sessions = append(m.sessions, session)
	return "tok-" + session, time.Unix(1_900_000_000, 0), nil
}

// Only admins mint workload tokens; bad requests mint nothing.
func TestWorkloadTokens(t *testing.T) {
	is := oidctest.NewIssuer(t)
	v, err := auth.NewVerifier(t.Context(), auth.Options{Issuer: is.URL, ClientID: oidctest.ClientID,
		Roles: auth.RolesFromGroups([]string{"admins"}, []string{"auditors"}, []string{"approvers"})})
	if err != nil {
		t.Fatal(err)
	}
	m := &recordingMinter{}
	srv := newHTTPTest(t, newServer(Options{Store: openSQLite(t), Verifier: v, WorkloadTokens: m}))
	post := func(token, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/api/v1/workload-tokens", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out WorkloadToken
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out.Token + " " + resp.Header.Get("Cache-Control")
	}
	admin := is.Token("ann", "admins")
	if code, got := post(admin, `{"session":"s-1"}`); code != http.StatusOK || got != "tok-s-1 no-store" {
		t.Fatalf("admin: %d %q", code, got)
	}
	for name, tok := range map[string]string{"none": "", "auditor": is.Token("bo", "auditors"), "approver": is.Token("cy", "approvers")} {
		if code, _ := post(tok, `{"session":"s-2"}`); code != http.StatusUnauthorized && code != http.StatusForbidden {
			t.Errorf("%s: %d, want 401 or 403", name, code)
		}
	}
	for _, body := range []string{`{"session":"a.b"}`, `{"session":">"}`, `{}`, `{"session":"s","ttl_seconds":-1}`, `{"session":"s","ttl_seconds":5}`, `[`, strings.Repeat("x", 5000)} {
		if code, _ := post(admin, body); code != http.StatusBadRequest {
			t.Errorf("body %.40q: %d, want 400", body, code)
		}
	}
	if len(m.sessions) != 1 {
		t.Fatalf("minted for %q, want only s-1", m.sessions)
	}
	// Without a minter the route says so.
	none := newHTTPTest(t, newServer(Options{Store: openSQLite(t)}))
	resp, err := http.Post(none.URL+"/api/v1/workload-tokens", "application/json", strings.NewReader(`{"session":"s"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("no minter: %d", resp.StatusCode)
	}
}
