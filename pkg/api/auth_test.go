package api

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/chaperone-dev/chaperone/pkg/auth"
	"github.com/chaperone-dev/chaperone/pkg/auth/oidctest"
	"github.com/chaperone-dev/chaperone/pkg/store"
)

// authFixture is the API with a real OIDC verifier against a test issuer.
type authFixture struct {
	is   *oidctest.Issuer
	st   store.Store
	http *httptest.Server
	reg  *prometheus.Registry
	logs *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newAuthFixture(t *testing.T) *authFixture {
	t.Helper()
	st := openSQLite(t)
	seed(t, st)
	is := oidctest.NewIssuer(t)
	roles := auth.RolesFromGroups([]string{"admins"}, []string{"auditors"}, []string{"approvers"}).
		Merge(auth.Roles{Grants: []auth.Grant{
			{Group: "team-a-auditors", Role: "auditor", Namespaces: []string{"team-a"}},
			{Group: "team-b-auditors", Role: "auditor", Namespaces: []string{"team-b"}},
		}})
	v, err := auth.NewVerifier(t.Context(), auth.Options{Issuer: is.URL, ClientID: oidctest.ClientID, Roles: roles})
	if err != nil {
		t.Fatal(err)
	}
	f := &authFixture{is: is, st: st, reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	srv := newServer(Options{
		Store:    st,
		Logger:   slog.New(slog.NewJSONHandler(f.logs, nil)),
		Registry: f.reg,
		Verifier: v,
	})
	srv.now = func() time.Time { return seedTime }
	f.http = newHTTPTest(t, srv)
	return f
}

func (f *authFixture) do(t *testing.T, method, path, token string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, f.http.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := f.http.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func TestAuthRefusesBadTokens(t *testing.T) {
	f := newAuthFixture(t)
	is := f.is
	now := time.Now()
	claims := func(k string, v any) map[string]any {
		c := is.Claims("ann", "admins")
		c[k] = v
		return c
	}
	tokens := map[string]string{
		"missing":        "",
		"garbage":        "garbage",
		"expired":        is.Sign(is.Current(), claims("exp", now.Add(-time.Minute).Unix())),
		"not yet valid":  is.Sign(is.Current(), claims("nbf", now.Add(time.Hour).Unix())),
		"wrong audience": is.Sign(is.Current(), claims("aud", "other")),
		"wrong issuer":   is.Sign(is.Current(), claims("iss", "https://evil.example.com")),
		"alg none":       is.Unsigned(is.Claims("ann", "admins")),
		"wrong key":      is.Sign(is.NewKey(), is.Claims("ann", "admins")),
	}
	paths := []string{"/api/v1/sessions", "/api/v1/sessions/" + alice, "/api/v1/sessions/" + alice + "/events", "/api/v1/info", "/api/v1/sessions/" + alice + "/verify"}
	for name, tok := range tokens {
		for _, path := range paths {
			resp, body := f.do(t, http.MethodGet, path, tok)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s %s: status %d, want 401: %s", name, path, resp.StatusCode, body)
				continue
			}
			var e Error
			if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
				t.Errorf("%s %s: body %q not a JSON error", name, path, body)
			}
			if strings.Contains(string(body), alice) && !strings.Contains(e.Error, "unauthorized") {
				t.Errorf("%s %s: body leaks data: %s", name, path, body)
			}
			wa := resp.Header.Get("WWW-Authenticate")
			if !strings.HasPrefix(wa, "Bearer") || (name != "missing" && !strings.Contains(wa, `error="invalid_token"`)) {
				t.Errorf("%s %s: WWW-Authenticate %q", name, path, wa)
			}
		}
	}
	// The good token passes, so the refusals above were about the tokens.
	if resp, body := f.do(t, http.MethodGet, "/api/v1/sessions", is.Token("ann", "admins")); resp.StatusCode != http.StatusOK {
		t.Fatalf("good token: %d %s", resp.StatusCode, body)
	}
	if !strings.Contains(f.logs.String(), "api authentication refused") {
		t.Error("refusals not logged")
	}
}

func TestAuthPublicRoutes(t *testing.T) {
	f := newAuthFixture(t)
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/openapi.json"} {
		if resp, body := f.do(t, http.MethodGet, path, ""); resp.StatusCode != http.StatusOK {
			t.Errorf("%s without token: %d %s", path, resp.StatusCode, body)
		}
	}
	for _, path := range []string{"/healthz", "/callbacks/slack", "/api/v1/sessions"} {
		if isPublic(path) != (path != "/api/v1/sessions") {
			t.Errorf("isPublic(%s) wrong", path)
		}
	}
}

func TestAuthRoles(t *testing.T) {
	f := newAuthFixture(t)
	tests := []struct {
		groups []string
		path   string
		want   int
	}{
		{nil, "/api/v1/info", http.StatusOK},
		{nil, "/api/v1/sessions", http.StatusForbidden},
		{[]string{"approvers"}, "/api/v1/sessions", http.StatusForbidden},
		{[]string{"approvers"}, "/api/v1/sessions/" + alice, http.StatusForbidden},
		{[]string{"approvers"}, "/api/v1/blobs/sha256:" + strings.Repeat("0", 64), http.StatusForbidden},
		{[]string{"auditors"}, "/api/v1/sessions", http.StatusOK},
		{[]string{"auditors"}, "/api/v1/sessions/" + bob + "/verify", http.StatusOK},
		{[]string{"admins"}, "/api/v1/sessions/" + bob, http.StatusOK},
	}
	for _, tc := range tests {
		resp, body := f.do(t, http.MethodGet, tc.path, f.is.Token("ann", tc.groups...))
		if resp.StatusCode != tc.want {
			t.Errorf("groups %v %s: %d, want %d: %s", tc.groups, tc.path, resp.StatusCode, tc.want, body)
		}
	}
	for path, want := range map[string]string{
		"/api/v1/approvals": "approver", "/api/v1/approvals/x/approve": "approver",
		"/api/v1/sessions/{id}/streams/{stream}": "auditor", "/api/v1/something-new": "admin", "/api/v1/info": "",
	} {
		if got := string(requiredRole(path)); got != want {
			t.Errorf("requiredRole(%s) = %q, want %q", path, got, want)
		}
	}
}

func TestAuthNamespaceLimited(t *testing.T) {
	f := newAuthFixture(t)
	list := func(t *testing.T, token, query string) []string {
		t.Helper()
		resp, body := f.do(t, http.MethodGet, "/api/v1/sessions"+query, token)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("list %s: %d %s", query, resp.StatusCode, body)
		}
		var page store.SessionPage
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, s := range page.Sessions {
			ids = append(ids, s.ID)
		}
		slices.Sort(ids)
		return ids
	}
	teamA := f.is.Token("ann", "team-a-auditors")
	both := f.is.Token("bo", "team-a-auditors", "team-b-auditors")
	all := f.is.Token("cy", "auditors", "team-a-auditors")
	tests := []struct {
		name, token, query string
		want               []string
	}{
		{"team-a", teamA, "", []string{alice, carol}},
		{"team-a asks team-b", teamA, "?namespace=team-b", nil},
		{"team-a asks team-a", teamA, "?namespace=team-a", []string{alice, carol}},
		{"team-a by user", teamA, "?user=bob", nil},
		{"two namespaces", both, "", []string{alice, bob, carol}},
		{"two namespaces asks one", both, "?namespace=team-b", []string{bob}},
		{"unlimited wins", all, "", []string{alice, bob, carol}},
	}
	for _, tc := range tests {
		if got := list(t, tc.token, tc.query); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	for _, suffix := range []string{"", "/events", "/verify", "/replay?speed=1000"} {
		resp, body := f.do(t, http.MethodGet, "/api/v1/sessions/"+bob+suffix, teamA)
		if resp.StatusCode != http.StatusNotFound || strings.Contains(string(body), "team-b") {
			t.Errorf("team-a auditor reads bob%s: %d %s", suffix, resp.StatusCode, body)
		}
		if resp, body := f.do(t, http.MethodGet, "/api/v1/sessions/"+alice+suffix, teamA); resp.StatusCode != http.StatusOK {
			t.Errorf("team-a auditor reads alice%s: %d %s", suffix, resp.StatusCode, body)
		}
	}
	if resp, body := f.do(t, http.MethodGet, "/api/v1/sessions/"+bob+"/streams/s1.cast", teamA); resp.StatusCode != http.StatusNotFound {
		t.Errorf("team-a auditor reads a bob stream: %d %s", resp.StatusCode, body)
	}
	resp, _ := f.do(t, http.MethodGet, "/api/v1/sessions/no-such-session", teamA)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("missing session: %d", resp.StatusCode)
	}
}

func TestAuthBlobScoped(t *testing.T) {
	f := newAuthFixture(t)
	ref := store.BlobRef([]byte("x")) // alice's response body
	if err := f.st.PutBlobs(t.Context(), []store.Blob{{Ref: ref, Data: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	teamA := f.is.Token("ann", "team-a-auditors")
	teamB := f.is.Token("bo", "team-b-auditors")
	all := f.is.Token("cy", "auditors")
	tests := []struct {
		name, token, query string
		want               int
	}{
		{"unlimited, no session", all, "", http.StatusOK},
		{"unlimited, the session", all, "?session=" + alice, http.StatusOK},
		{"unlimited, another session", all, "?session=" + bob, http.StatusNotFound},
		{"limited, no session", teamA, "", http.StatusBadRequest},
		{"limited, own session", teamA, "?session=" + alice, http.StatusOK},
		{"limited, session not naming it", teamB, "?session=" + bob, http.StatusNotFound},
		{"limited, someone else's session", teamB, "?session=" + alice, http.StatusNotFound},
		{"limited, unknown session", teamA, "?session=nope", http.StatusNotFound},
		{"bad session id", all, "?session=a/b", http.StatusBadRequest},
	}
	for _, tc := range tests {
		resp, body := f.do(t, http.MethodGet, "/api/v1/blobs/"+ref+tc.query, tc.token)
		if resp.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d: %s", tc.name, resp.StatusCode, tc.want, body)
		}
		if tc.want == http.StatusOK && string(body) != "x" {
			t.Errorf("%s: body %q", tc.name, body)
		}
	}
}

func TestAuthAudit(t *testing.T) {
	f := newAuthFixture(t)
	f.do(t, http.MethodGet, "/api/v1/sessions/"+alice, f.is.Token("ann", "admins"))
	f.do(t, http.MethodGet, "/api/v1/sessions", f.is.Token("bo"))
	f.do(t, http.MethodGet, "/api/v1/sessions", "garbage")
	f.do(t, http.MethodGet, "/healthz", "")

	access := func(role, route, code string) float64 {
		return testutil.ToFloat64(newAccessCounter(f.reg).WithLabelValues(role, route, http.MethodGet, code))
	}
	if got := access("admin", "/api/v1/sessions/{id}", "200"); got != 1 {
		t.Errorf("ann's access counted %v times", got)
	}
	if got := access("none", "/api/v1/sessions", "403"); got != 1 {
		t.Errorf("bo's refusal counted %v times", got)
	}
	if got := access("anonymous", "/api/v1/sessions", "401"); got != 1 {
		t.Errorf("anonymous refusal counted %v times", got)
	}
	if got := access("anonymous", "/healthz", "200"); got != 0 {
		t.Errorf("health audited %v times", got)
	}

	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(f.logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["msg"] == "api access" {
			lines = append(lines, m)
		}
	}
	if len(lines) != 3 {
		t.Fatalf("%d audit lines, want 3: %s", len(lines), f.logs.String())
	}
	if l := lines[0]; l["principal"] != "ann@example.com" || l["subject"] != "ann" || l["route"] != "/api/v1/sessions/{id}" || l["status"] != float64(200) {
		t.Errorf("audit line %v", l)
	}
	if l := lines[2]; l["principal"] != "anonymous" || l["status"] != float64(401) {
		t.Errorf("audit line %v", l)
	}
}

func TestLocalModePrincipal(t *testing.T) {
	// No verifier: the local administrator, for every route.
	f := newFixture(t, openSQLite(t))
	resp := f.get(t, "/api/v1/sessions/"+bob)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("local mode: %d", resp.StatusCode)
	}
}
