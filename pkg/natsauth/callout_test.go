package natsauth_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chaperone-dev/chaperone/pkg/approvals"
	"github.com/chaperone-dev/chaperone/pkg/natsauth"
	"github.com/chaperone-dev/chaperone/pkg/natsauth/natscred"
	"github.com/chaperone-dev/chaperone/pkg/natsbus"
)

// Every bad token is refused at connect, with its reason logged by the
// callout, and nothing reaches the events stream.
func TestCalloutRefusesBadTokens(t *testing.T) {
	b := startBus(t)
	is := b.issuer
	const uid = "0b1e8a3c-5f0e-4c55-9d3a-2f5b7f0e1a11"
	good := func() map[string]any { return podClaims(is, "agents", "coder", "coder-0", uid) }
	with := func(k string, v any) map[string]any {
		c := good()
		c[k] = v
		return c
	}
	kube := func(mut func(map[string]any)) map[string]any {
		c := good()
		k := c["kubernetes.io"].(map[string]any)
		mut(k)
		return c
	}
	stranger := is.NewKey() // never published
	now := time.Now()
	tests := []struct {
		name   string
		token  string
		reason string
	}{
		{"no token", "", "no bearer token"},
		{"garbage", "garbage", "malformed token"},
		{"garbage three parts", "a.b.c", "malformed token"},
		{"expired", is.Sign(is.Current(), with("exp", now.Add(-time.Minute).Unix())), "token expired"},
		{"wrong audience", is.Sign(is.Current(), with("aud", []string{"kubernetes"})), "token for another audience"},
		{"untrusted issuer", is.Sign(is.Current(), with("iss", "https://evil.example.com")), "untrusted issuer"},
		{"alg none", is.Unsigned(good()), "unsigned token"},
		{"wrong key", is.Sign(stranger, good()), "token signature not valid"},
		{"local issuer name, foreign key", is.Sign(is.Current(), with("iss", natsauth.LocalIssuerName)), "token signature not valid"},
		{"not bound to a pod", is.Sign(is.Current(), kube(func(k map[string]any) { delete(k, "pod") })), "token not bound to a pod"},
		{"wildcard pod uid", is.Sign(is.Current(), kube(func(k map[string]any) { k["pod"] = map[string]string{"name": "x", "uid": ">"} })), "pod uid"},
		{"subject of another account", is.Sign(is.Current(), with("sub", "system:serviceaccount:kube-system:admin")), "does not match service account"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c *workloadConn
			var err error
			if tc.token == "" {
				c, err = b.dialNoToken(t)
			} else {
				c, err = b.connect(t, uid, tc.token+"\n")
			}
			if err == nil {
				c.Close()
				t.Fatalf("connected with a bad token")
			}
			if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
				t.Fatalf("connect error %v, want an authorization violation", err)
			}
			b.waitLog(t, "nats connection refused", tc.reason)
		})
	}
	if n := b.stored(t, ">"); n != 0 {
		t.Fatalf("%d messages stored from refused connections", n)
	}
}

// A pod's token publishes into its own session, reads the policy bucket,
// asks for approvals for its session, and is refused everything else.
func TestCalloutGrantsOwnSessionOnly(t *testing.T) {
	b := startBus(t)
	const mine, other = "a1b2c3d4-0000-4000-8000-000000000001", "a1b2c3d4-0000-4000-8000-000000000002"
	tok := b.issuer.Sign(b.issuer.Current(), podClaims(b.issuer, "agents", "coder", "coder-0", mine))
	c, err := b.connect(t, mine, tok)
	if err != nil {
		t.Fatalf("connect: %v\n%s", err, b.log.String())
	}
	b.waitLog(t, "nats connection granted", "session="+mine)
	ctx := t.Context()
	js, err := jetstream.New(c.Conn)
	if err != nil {
		t.Fatal(err)
	}
	for _, subj := range []string{natsbus.EventSubject(mine), natsbus.BlobSubject(mine)} {
		if _, err := js.Publish(ctx, subj, []byte(`{}`)); err != nil {
			t.Fatalf("publish own %s: %v", subj, err)
		}
	}

	// Into another pod's session: refused by the server, nothing stored.
	for _, subj := range []string{natsbus.EventSubject(other), natsbus.BlobSubject(other), natsbus.DeadLetterSubject, approvals.RequestSubject(other)} {
		if err := c.Publish(subj, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		waitPermission(t, c, subj)
	}
	if n := b.stored(t, natsbus.EventSubject(other)); n != 0 {
		t.Fatalf("%d messages stored in the other session", n)
	}
	if n := b.stored(t, ">"); n != 2 {
		t.Fatalf("%d messages stored, want the 2 of the own session", n)
	}

	// Reading what is not its own: refused.
	for _, subj := range []string{natsbus.EventSubjectPrefix + ">", natscred.InboxPrefix(other) + ".>", "_INBOX.>", natsauth.CalloutSubject} {
		if _, err := c.SubscribeSync(subj); err != nil {
			t.Fatal(err)
		}
		waitPermission(t, c, subj)
	}
	// No JetStream API beyond reading the policy bucket. A refused API
	// request gets no answer, so each waits out a short deadline.
	short, cancelShort := context.WithTimeout(ctx, time.Second)
	defer cancelShort()
	if _, err := js.CreateStream(short, jetstream.StreamConfig{Name: "MINE", Subjects: []string{"mine.>"}}); err == nil {
		t.Fatal("workload created a stream")
	}
	if err := js.DeleteStream(short, natsbus.EventsStream); err == nil {
		t.Fatal("workload deleted the events stream")
	}

	// The policy bucket: get and watch.
	for len(c.errs) > 0 {
		<-c.errs
	}
	kv, err := js.KeyValue(ctx, natsauth.PolicyBucket)
	if err != nil {
		t.Fatalf("open policy bucket: %v", err)
	}
	e, err := kv.Get(ctx, "policy")
	if err != nil || string(e.Value()) != "v1" {
		t.Fatalf("get policy: %v %v", e, err)
	}
	w, err := kv.Watch(ctx, "policy")
	if err != nil {
		t.Fatalf("watch policy: %v", err)
	}
	defer func() { _ = w.Stop() }()
	next := func() string {
		t.Helper()
		for {
			select {
			case e := <-w.Updates():
				if e != nil {
					return string(e.Value())
				}
			case err := <-c.errs:
				t.Fatalf("watch: %v", err)
			case <-time.After(10 * time.Second):
				t.Fatal("no policy update")
			}
		}
	}
	if v := next(); v != "v1" {
		t.Fatalf("watched %q, want v1", v)
	}
	if _, err := b.kv.PutString(ctx, "policy", "v2"); err != nil {
		t.Fatal(err)
	}
	if v := next(); v != "v2" {
		t.Fatalf("watched %q, want v2", v)
	}
	short2, cancelShort2 := context.WithTimeout(ctx, time.Second)
	defer cancelShort2()
	if _, err := kv.PutString(short2, "policy", "forged"); err == nil {
		t.Fatal("workload wrote the policy bucket")
	}

	// An approval request for its own session reaches the server and the
	// reply comes back through the workload's own inbox.
	sub, err := b.nc.Subscribe(approvals.RequestSubject(mine), func(m *nats.Msg) { _ = m.Respond([]byte("stored")) })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := b.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	msg, err := c.RequestWithContext(rctx, approvals.RequestSubject(mine), []byte(`{}`))
	if err != nil || string(msg.Data) != "stored" {
		t.Fatalf("approval request: %v %v", msg, err)
	}
}

// A token minted by the local issuer goes through the same callout, bound
// to the session it was minted for.
func TestCalloutLocalIssuer(t *testing.T) {
	b := startBus(t)
	const session, other = "run-1", "run-2"
	tok, exp, err := b.local.Mint(session, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if time.Until(exp) > time.Hour || time.Until(exp) < 50*time.Minute {
		t.Fatalf("expiry %s", exp)
	}
	c, err := b.connect(t, session, tok)
	if err != nil {
		t.Fatalf("connect: %v\n%s", err, b.log.String())
	}
	js, err := jetstream.New(c.Conn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(t.Context(), natsbus.EventSubject(session), []byte(`{}`)); err != nil {
		t.Fatalf("publish own: %v", err)
	}
	if err := c.Publish(natsbus.EventSubject(other), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	waitPermission(t, c, natsbus.EventSubject(other))
	if n := b.stored(t, ">"); n != 1 {
		t.Fatalf("%d stored, want 1", n)
	}
	for _, bad := range []time.Duration{time.Second, natsauth.MaxLocalTTL + time.Hour} {
		if _, _, err := b.local.Mint(session, bad); !errors.Is(err, natsauth.ErrTTL) {
			t.Errorf("mint ttl %s: %v", bad, err)
		}
	}
	if _, _, err := b.local.Mint("a.b", time.Hour); err == nil {
		t.Error("minted for session a.b")
	}
}

// A node agent's token publishes into any session but has no approvals.
func TestCalloutNodeAgent(t *testing.T) {
	b := startBus(t, natsauth.ServiceAccountRef{Namespace: "chaperone-system", Name: "chaperone-node"})
	const uid = "node-agent-pod-uid"
	tok := b.issuer.Sign(b.issuer.Current(), podClaims(b.issuer, "chaperone-system", "chaperone-node", "chaperone-node-x1", uid))
	c, err := b.connect(t, uid, tok)
	if err != nil {
		t.Fatalf("connect: %v\n%s", err, b.log.String())
	}
	b.waitLog(t, "nats connection granted", "kind=node-agent")
	js, err := jetstream.New(c.Conn)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"pod-a", "pod-b"} {
		if _, err := js.Publish(t.Context(), natsbus.EventSubject(s), []byte(`{}`)); err != nil {
			t.Fatalf("publish %s: %v", s, err)
		}
	}
	if err := c.Publish(approvals.RequestSubject("pod-a"), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	waitPermission(t, c, approvals.RequestSubject("pod-a"))
}

// Key rotation at the issuer: a token signed with the new key is accepted
// once the callout refetched the key set.
func TestCalloutKeyRotation(t *testing.T) {
	b := startBus(t)
	const uid = "rotation-pod"
	claims := func() map[string]any { return podClaims(b.issuer, "agents", "coder", "coder-r", uid) }
	c, err := b.connect(t, uid, b.issuer.Sign(b.issuer.Current(), claims()))
	if err != nil {
		t.Fatalf("connect before rotation: %v", err)
	}
	c.Close()
	before := b.issuer.JWKSFetches()
	fresh := b.issuer.Rotate()
	c, err = b.connect(t, uid, b.issuer.Sign(fresh, claims()))
	if err != nil {
		t.Fatalf("connect after rotation: %v\n%s", err, b.log.String())
	}
	c.Close()
	if b.issuer.JWKSFetches() <= before {
		t.Fatal("key set not fetched again after rotation")
	}
}

// The NATS user ends with its token; the client reconnects with the token
// rotated into its file since, as a sidecar does after the kubelet's
// rotation.
func TestCalloutUserExpiresWithToken(t *testing.T) {
	b := startBus(t)
	const uid = "rotating-pod"
	claims := podClaims(b.issuer, "agents", "coder", "coder-x", uid)
	claims["exp"] = time.Now().Add(3 * time.Second).Unix()
	file := filepath.Join(t.TempDir(), "token")
	if err := writeFile(file, b.issuer.Sign(b.issuer.Current(), claims)); err != nil {
		t.Fatal(err)
	}
	opts, err := natscred.Options(uid, file, nil)
	if err != nil {
		t.Fatal(err)
	}
	reconnected := make(chan struct{}, 1)
	nc, err := nats.Connect(b.url, append(opts, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond),
		nats.ReconnectHandler(func(*nats.Conn) { reconnected <- struct{}{} }),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// The kubelet's rotation: a fresh token in place of the old one.
	if err := writeFile(file, b.issuer.Sign(b.issuer.Current(), podClaims(b.issuer, "agents", "coder", "coder-x", uid))); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reconnected:
	case <-time.After(30 * time.Second):
		t.Fatal("no reconnect after the first token expired")
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(t.Context(), natsbus.EventSubject(uid), []byte(`{}`)); err != nil {
		t.Fatalf("publish after reconnect: %v", err)
	}
	if n := strings.Count(b.log.String(), "nats connection granted"); n < 2 {
		t.Fatalf("%d grants, want one per connect", n)
	}
}
