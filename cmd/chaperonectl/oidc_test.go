package main

import (
	"context"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/auth/oidctest"
	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/server"
	"github.com/chaperone-dev/chaperone/pkg/store/sqlite"
)

// startOIDCServer runs the real chaperone-server with OIDC against a test
// issuer, on a store seeded with one session in team-a and one in team-b.
func startOIDCServer(t *testing.T, is *oidctest.Issuer) string {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(t.Context(), filepath.Join(dir, server.DBFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"team-a", "team-b"} {
		e := event.New("s-"+ns, event.KindSessionStart, t0)
		e.Seq, e.Identity, e.SessionStart = 1, &event.Identity{User: "u", Namespace: ns, Pod: "p"}, &event.SessionStart{Origin: "pod"}
		if _, err := st.Append(t.Context(), []*event.Event{e}); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	roles := filepath.Join(dir, "roles.yaml")
	if err := os.WriteFile(roles, []byte("roles:\n  - group: leads-a\n    role: auditor\n    namespaces: [team-a]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- server.Run(ctx, server.Config{
			DataDir: dir, HTTPAddr: "0.0.0.0:0", NATSAddr: "127.0.0.1:0",
			OIDCIssuer: is.URL, OIDCClientID: oidctest.ClientID,
			AuditorGroups: []string{"auditors"}, RolesFile: roles,
		}, nil)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	deadline := time.Now().Add(time.Minute)
	for {
		select {
		case err := <-done:
			t.Fatalf("server ended: %v", err)
		default:
		}
		if a, err := server.ReadAddresses(dir); err == nil {
			u, err := url.Parse(a.HTTP)
			if err != nil {
				t.Fatal(err)
			}
			// Listening on all interfaces; talk to loopback only.
			return "http://" + net.JoinHostPort("127.0.0.1", u.Port())
		}
		if time.Now().After(deadline) {
			t.Fatal("server did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestOIDCServer(t *testing.T) {
	is := oidctest.NewIssuer(t)
	srv := startOIDCServer(t, is)
	ctl := func(env map[string]string, args ...string) (int, string, string) {
		t.Helper()
		if env == nil {
			env = map[string]string{}
		}
		env["CHAPERONE_SERVER"] = srv
		return run(t, nil, env, args...)
	}
	auditor := is.Token("ann", "auditors")
	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, []byte(auditor+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	for name, tc := range map[string]struct {
		env  map[string]string
		args []string
	}{
		"env":        {map[string]string{"CHAPERONE_TOKEN": auditor}, nil},
		"flag":       {nil, []string{"--token", auditor}},
		"token file": {nil, []string{"--token-file", tokFile}},
	} {
		code, out, errs := ctl(tc.env, append(tc.args, "sessions", "list", "-o", "json")...)
		if code != 0 || !strings.Contains(out, "s-team-a") || !strings.Contains(out, "s-team-b") {
			t.Errorf("%s: exit %d out %q err %q", name, code, out, errs)
		}
	}

	refused := map[string][]string{
		"no token":   {"sessions", "list"},
		"bad token":  {"--token", "garbage", "sessions", "list"},
		"wrong key":  {"--token", is.Sign(is.NewKey(), is.Claims("ann", "auditors")), "sessions", "list"},
		"no role":    {"--token", is.Token("bo", "other"), "sessions", "list"},
		"other team": {"--token", is.Token("cy", "leads-a"), "sessions", "show", "s-team-b"},
	}
	for name, args := range refused {
		code, out, errs := ctl(nil, args...)
		t.Logf("%s: %s", name, strings.TrimSpace(errs))
		if code == 0 || strings.Contains(out, "s-team-b") || errs == "" {
			t.Errorf("%s: exit %d out %q err %q", name, code, out, errs)
		}
	}
	code, out, errs := ctl(nil, "--token", is.Token("cy", "leads-a"), "sessions", "list", "-o", "json")
	if code != 0 || !strings.Contains(out, "s-team-a") || strings.Contains(out, "s-team-b") {
		t.Errorf("team-a lead list: exit %d out %q err %q", code, out, errs)
	}
}
