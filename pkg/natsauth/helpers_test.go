package natsauth_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/chaperone-dev/chaperone/pkg/auth"
	"github.com/chaperone-dev/chaperone/pkg/auth/oidctest"
	"github.com/chaperone-dev/chaperone/pkg/natsauth"
	"github.com/chaperone-dev/chaperone/pkg/natsauth/natscred"
	"github.com/chaperone-dev/chaperone/pkg/natsbus"
)

// audience is what workload tokens must carry in these tests.
const audience = "chaperone"

// logBuffer collects log output for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// bus is an embedded NATS with the callout, the server's own connection,
// and the issuers the callout trusts.
type bus struct {
	url    string
	nc     *nats.Conn
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	svc    *natsauth.Service
	log    *logBuffer
	issuer *oidctest.Issuer
	local  *natsauth.LocalIssuer
}

func startBus(t *testing.T, nodeAgents ...natsauth.ServiceAccountRef) *bus {
	t.Helper()
	ctx := t.Context()
	signer, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := signer.PublicKey()
	emb, err := natsbus.StartEmbedded(ctx, natsbus.EmbeddedOptions{
		Addr: "127.0.0.1:0", StoreDir: t.TempDir(),
		Auth: &natsbus.EmbeddedAuth{User: "chaperone-server", Password: "test-password", CalloutIssuer: pub},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emb.Shutdown(context.Background()) })
	nc, err := natsbus.Connect(ctx, emb.ClientURL(), nats.UserInfo("chaperone-server", "test-password"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := natsbus.EnsureStreams(ctx, js); err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: natsauth.PolicyBucket})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.PutString(ctx, "policy", "v1"); err != nil {
		t.Fatal(err)
	}

	is := oidctest.NewIssuer(t)
	kubeV, err := auth.NewVerifier(ctx, auth.Options{Issuer: is.URL, ClientID: audience})
	if err != nil {
		t.Fatal(err)
	}
	local, err := natsauth.LoadLocalIssuer(filepath.Join(t.TempDir(), "issuer.pem"), audience)
	if err != nil {
		t.Fatal(err)
	}
	localV, err := local.Verifier(ctx)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	svc, err := natsauth.Start(ctx, natsauth.Options{
		Conn:   nc,
		Signer: signer,
		Trusted: []natsauth.Trusted{
			{Issuer: is.URL, Verifier: kubeV},
			{Issuer: natsauth.LocalIssuerName, Verifier: localV},
		},
		NodeAgents: nodeAgents,
		Logger:     slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop(context.Background()) })
	return &bus{url: emb.ClientURL(), nc: nc, js: js, kv: kv, svc: svc, log: logs, issuer: is, local: local}
}

// podClaims are the claims of a projected token of pod name/uid in
// namespace ns under service account sa.
func podClaims(is *oidctest.Issuer, ns, sa, name, uid string) map[string]any {
	c := is.Claims("system:serviceaccount:" + ns + ":" + sa)
	delete(c, "email")
	c["aud"] = []string{audience}
	c["kubernetes.io"] = map[string]any{
		"namespace":      ns,
		"pod":            map[string]string{"name": name, "uid": uid},
		"serviceaccount": map[string]string{"name": sa, "uid": "sa-uid"},
		"node":           map[string]string{"name": "node-1", "uid": "node-uid"},
	}
	return c
}

// workloadConn is a workload's connection with its asynchronous errors.
type workloadConn struct {
	*nats.Conn
	errs chan error
}

// connect dials as a workload of session with tok, the way a sidecar does.
func (b *bus) connect(t *testing.T, session, tok string) (*workloadConn, error) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "token")
	if err := writeFile(file, tok); err != nil {
		t.Fatal(err)
	}
	opts, err := natscred.Options(session, file, nil)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 16)
	opts = append(opts, nats.MaxReconnects(0), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case errs <- err:
		default:
		}
	}))
	nc, err := nats.Connect(b.url, opts...)
	if err != nil {
		return nil, err
	}
	t.Cleanup(nc.Close)
	return &workloadConn{Conn: nc, errs: errs}, nil
}

// waitLog waits until the callout logged a line containing all of want.
func (b *bus) waitLog(t *testing.T, want ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for line := range strings.SplitSeq(b.log.String(), "\n") {
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(line, w)
			}
			if ok {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q in:\n%s", want, b.log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stored counts the messages in the events stream on subject (">" for all).
func (b *bus) stored(t *testing.T, subject string) uint64 {
	t.Helper()
	s, err := b.js.Stream(t.Context(), natsbus.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context(), jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	if subject == ">" {
		return info.State.Msgs
	}
	return info.State.Subjects[subject]
}

// waitPermission waits for the server's permissions violation on c.
func waitPermission(t *testing.T, c *workloadConn, subject string) {
	t.Helper()
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	for {
		select {
		case err := <-c.errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), subject) {
				return
			}
		case <-timer.C:
			t.Fatalf("no permissions violation for %s", subject)
		}
	}
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o600) }

// dialNoToken connects as a client that presents no token at all.
func (b *bus) dialNoToken(t *testing.T) (*workloadConn, error) {
	t.Helper()
	nc, err := nats.Connect(b.url, nats.MaxReconnects(0))
	if err != nil {
		return nil, err
	}
	return &workloadConn{Conn: nc}, nil
}
