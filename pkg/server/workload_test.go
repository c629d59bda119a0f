package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chaperone-dev/chaperone/pkg/api"
	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/natsauth/natscred"
	"github.com/chaperone-dev/chaperone/pkg/natsbus"
)

// mintToken asks the server's API for session's NATS token and writes it
// to a file, as chaperonectl run does.
func mintToken(tb testing.TB, httpURL, session string) string {
	tb.Helper()
	body, _ := json.Marshal(api.WorkloadTokenRequest{Session: session})
	resp, err := http.Post(httpURL+"/api/v1/workload-tokens", "application/json", strings.NewReader(string(body)))
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var tok api.WorkloadToken
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || resp.StatusCode != http.StatusOK || tok.Token == "" {
		tb.Fatalf("mint: %d %v %+v", resp.StatusCode, err, tok)
	}
	file := filepath.Join(tb.TempDir(), "token")
	if err := os.WriteFile(file, []byte(tok.Token), 0o600); err != nil {
		tb.Fatal(err)
	}
	return file
}

// workloadConn connects like a sidecar of session with the token in file.
func workloadConn(tb testing.TB, url, session, file string, more ...nats.Option) (*nats.Conn, error) {
	tb.Helper()
	opts, err := natscred.Options(session, file, nil)
	if err != nil {
		tb.Fatal(err)
	}
	nc, err := natsbus.Connect(tb.Context(), url, append(append(opts, nats.MaxReconnects(0)), more...)...)
	if err == nil {
		tb.Cleanup(nc.Close)
	}
	return nc, err
}

// The embedded NATS admits only the server itself and workloads with a
// token; a token minted for one session records that session and cannot
// write into another.
func TestRunWorkloadAuth(t *testing.T) {
	dir := t.TempDir()
	s := start(t, Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0"})
	defer s.stop(t)

	if nc, err := nats.Connect(s.addrs.NATS, nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("connected without credentials")
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("no credentials: %v", err)
	}
	if nc, err := nats.Connect(s.addrs.NATS, nats.MaxReconnects(0), nats.UserInfo(DefaultNATSUser, "wrong")); err == nil {
		nc.Close()
		t.Fatal("connected with a wrong server password")
	}

	const mine, other = "sess-mine", "sess-other"
	file := mintToken(t, s.addrs.HTTP, mine)
	violations := make(chan error, 4)
	nc, err := workloadConn(t, s.addrs.NATS, mine, file, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		violations <- err
	}))
	if err != nil {
		t.Fatalf("connect with minted token: %v", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ev := newEvent(mine, 1)
	data, _ := event.Encode(ev)
	if _, err := js.Publish(t.Context(), natsbus.EventSubject(mine), data, jetstream.WithMsgID(ev.ID)); err != nil {
		t.Fatalf("publish own session: %v", err)
	}
	forged := newEvent(other, 1)
	data, _ = event.Encode(forged)
	if err := nc.Publish(natsbus.EventSubject(other), data); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-violations:
		if !errors.Is(err, nats.ErrPermissionViolation) {
			t.Fatalf("publish into another session: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no permissions violation for another session's subject")
	}
	waitFor(t, "own session stored", func() bool {
		code, body := get(t, s.addrs.HTTP+"/api/v1/sessions/"+mine+"/events")
		return code == 200 && strings.Contains(body, ev.ID)
	})
	if code, _ := get(t, s.addrs.HTTP+"/api/v1/sessions/"+other); code != http.StatusNotFound {
		t.Fatalf("other session: %d, want 404", code)
	}

	// Bad token requests change nothing.
	for _, body := range []string{`{"session":"a.b"}`, `{"session":""}`, `{"session":"x","ttl_seconds":1}`, `nope`} {
		resp, err := http.Post(s.addrs.HTTP+"/api/v1/workload-tokens", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("mint %s: %d, want 400", body, resp.StatusCode)
		}
	}
}

// The local issuer's key outlives a restart, so a sidecar reconnects with
// the token it has.
func TestRunWorkloadTokenSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", NATSAddr: freePort(t)}
	s := start(t, cfg)
	file := mintToken(t, s.addrs.HTTP, "sess-r")
	s.stop(t)
	if err := os.Remove(filepath.Join(dir, AddressesFile)); err != nil {
		t.Fatal(err)
	}
	s = start(t, cfg)
	defer s.stop(t)
	if _, err := workloadConn(t, s.addrs.NATS, "sess-r", file); err != nil {
		t.Fatalf("token after restart: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, WorkloadIssuerKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("issuer key file: %v %v", fi, err)
	}
}

func TestValidateWorkload(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", Config{DataDir: "/d"}, true},
		{"cluster issuer", Config{DataDir: "/d", WorkloadIssuer: "https://kubernetes.default.svc.cluster.local",
			WorkloadDiscoveryURL: "https://kubernetes.default.svc", WorkloadCAFile: "ca.crt", WorkloadTokenFile: "token",
			NodeAgentServiceAccounts: []string{"chaperone-system/chaperone-node"}}, true},
		{"issuer over plain http", Config{DataDir: "/d", WorkloadIssuer: "http://issuer.example"}, false},
		{"issuer not a url", Config{DataDir: "/d", WorkloadIssuer: "issuer"}, false},
		{"discovery without issuer", Config{DataDir: "/d", WorkloadDiscoveryURL: "https://x"}, false},
		{"bad node agent", Config{DataDir: "/d", WorkloadIssuer: "https://i", NodeAgentServiceAccounts: []string{"node"}}, false},
		{"external nats with callout", Config{DataDir: "/d", NATSURL: "nats://n:4222", NATSCalloutSeedFile: "seed",
			NATSCalloutAccount: "CHAPERONE", WorkloadIssuer: "https://i"}, true},
		{"external nats without callout", Config{DataDir: "/d", NATSURL: "nats://n:4222"}, true},
		{"external issuer without callout", Config{DataDir: "/d", NATSURL: "nats://n:4222", WorkloadIssuer: "https://i"}, false},
		{"callout seed for embedded", Config{DataDir: "/d", NATSCalloutSeedFile: "seed"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("got %v, want ErrInvalidConfig", err)
			}
		})
	}
}
