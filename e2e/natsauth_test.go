package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/chaperone-dev/chaperone/e2e/kube"
	"github.com/chaperone-dev/chaperone/pkg/client"
	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/localserver"
	"github.com/chaperone-dev/chaperone/pkg/natsauth/natscred"
	"github.com/chaperone-dev/chaperone/pkg/natsbus"
	"github.com/chaperone-dev/chaperone/pkg/runner"
)

// workloadAudience is the audience the server wants on workload tokens,
// the webhook's default --token-audience.
const workloadAudience = "chaperone"

// kubeBed is the test bed's cluster with the objects the NATS tests use.
type kubeBed struct {
	cluster *kube.Cluster
	cs      kubernetes.Interface
	podA    *corev1.Pod
	podB    *corev1.Pod
	podC    *corev1.Pod // recorded by the real sidecar
	agent   *corev1.Pod // a node agent's pod
}

func startKubeBed(t *testing.T) *kubeBed {
	t.Helper()
	c := kube.StartTest(t)
	cs, err := kubernetes.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for _, ns := range []string{"agents", "chaperone-system"} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, sa := range []struct{ ns, name string }{{"agents", "coder"}, {"chaperone-system", "chaperone-server"}, {"chaperone-system", "chaperone-node"}} {
		if _, err := cs.CoreV1().ServiceAccounts(sa.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa.name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pod := func(ns, name, sa string) *corev1.Pod {
		p, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PodSpec{
				ServiceAccountName: sa,
				Containers:         []corev1.Container{{Name: "main", Image: "registry.example/agent:1"}},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	return &kubeBed{
		cluster: c, cs: cs,
		podA:  pod("agents", "coder-a", "coder"),
		podB:  pod("agents", "coder-b", "coder"),
		podC:  pod("agents", "coder-c", "coder"),
		agent: pod("chaperone-system", "chaperone-node-x1", "chaperone-node"),
	}
}

// token asks the API server for a token of the pod's service account with
// the audiences; bound to the pod unless unbound.
func (b *kubeBed) token(t *testing.T, pod *corev1.Pod, unbound bool, audiences ...string) string {
	t.Helper()
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: audiences}}
	if !unbound {
		req.Spec.BoundObjectRef = &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
	}
	tr, err := b.cs.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(t.Context(), pod.Spec.ServiceAccountName, req, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// startClusterServer runs chaperone-server trusting the test bed's
// service-account issuer, configured the way it is in a pod: discovery
// at the API server's own address, its CA, and a service-account token of
// its own as bearer (the default system:service-account-issuer-discovery
// binding lets every service account read the issuer's discovery).
func startClusterServer(t *testing.T, b *kubeBed) (*localserver.Server, *client.Client, string) {
	t.Helper()
	dir := t.TempDir()
	secrets := t.TempDir()
	caFile := filepath.Join(secrets, "ca.crt")
	tokenFile := filepath.Join(secrets, "token")
	serverSA := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "chaperone-system"}, Spec: corev1.PodSpec{ServiceAccountName: "chaperone-server"}}
	if err := os.WriteFile(caFile, b.cluster.CA(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokenFile, []byte(b.token(t, serverSA, true)), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := localserver.Start(t.Context(), localserver.Options{Binary: bin("chaperone-server"), DataDir: dir, Args: []string{
		"--workload-issuer", kube.Issuer,
		"--workload-discovery-url", b.cluster.URL(),
		"--workload-ca-file", caFile,
		"--workload-token-file", tokenFile,
		"--workload-audience", workloadAudience,
		"--node-agent-service-accounts", "chaperone-system/chaperone-node",
	}})
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
		t.Fatalf("%v\n%s", err, log)
	}
	logFile := filepath.Join(dir, "server.log")
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("stop server: %v", err)
		}
		if t.Failed() {
			if log, err := os.ReadFile(logFile); err == nil {
				t.Logf("server log:\n%s", log)
			}
		}
	})
	cl, err := client.New(srv.Addrs.HTTP)
	if err != nil {
		t.Fatal(err)
	}
	return srv, cl, logFile
}

// dialWorkload connects to NATS as a workload of session with tok.
func dialWorkload(t *testing.T, url, session, tok string) (*nats.Conn, <-chan error, error) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(tok), 0o600); err != nil {
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
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, nil, err
	}
	t.Cleanup(nc.Close)
	return nc, errs, nil
}

// publishEvent publishes one event of session through JetStream.
func publishEvent(ctx context.Context, nc *nats.Conn, session string) (*event.Event, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	e := event.New(session, event.KindSessionStart, time.Now())
	e.Seq = 1
	e.Source = event.SourceSidecar
	e.SessionStart = &event.SessionStart{Origin: "pod"}
	data, err := event.Encode(e)
	if err != nil {
		return nil, err
	}
	_, err = js.Publish(ctx, natsbus.EventSubject(session), data, jetstream.WithMsgID(e.ID))
	return e, err
}

// waitLogLine waits until the server log has a line with all of want.
func waitLogLine(t *testing.T, file string, want ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(file)
		for line := range strings.SplitSeq(string(b), "\n") {
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(line, w)
			}
			if ok {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server log has no line with %q", want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestNATSAuthWithKubeTokens runs the NATS auth callout against tokens the
// real kube-apiserver signs: a pod's projected-style token publishes into
// its own session only (session id = pod UID), a node agent's into any,
// and every bad token is refused with its reason in the server log and
// nothing stored. Then the real sidecar records a `chaperonectl run`-style
// session authenticated by a pod's API-server token.
func TestNATSAuthWithKubeTokens(t *testing.T) {
	b := startKubeBed(t)
	srv, cl, logFile := startClusterServer(t, b)
	waitLogLine(t, logFile, "nats auth callout ready", kube.Issuer)
	ctx := t.Context()
	uidA, uidB := string(b.podA.UID), string(b.podB.UID)

	// A pod's token: its own session is recorded.
	tokA := b.token(t, b.podA, false, workloadAudience)
	nc, errs, err := dialWorkload(t, srv.Addrs.NATS, uidA, tokA)
	if err != nil {
		t.Fatalf("connect with pod A's token: %v", err)
	}
	waitLogLine(t, logFile, "nats connection granted", "session="+uidA, "agents/coder-a")
	own, err := publishEvent(ctx, nc, uidA)
	if err != nil {
		t.Fatalf("publish into own session: %v", err)
	}
	// Another pod's session: a permissions violation, nothing stored.
	forged := event.New(uidB, event.KindSessionStart, time.Now())
	forged.SessionStart = &event.SessionStart{Origin: "pod"}
	data, _ := event.Encode(forged)
	if err := nc.Publish(natsbus.EventSubject(uidB), data); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), uidB) {
			t.Fatalf("publish into pod B's session: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no permissions violation publishing into pod B's session")
	}
	waitForEvent(t, cl, uidA, own.ID)
	if _, err := cl.Session(ctx, uidB); !client.IsNotFound(err) {
		t.Fatalf("pod B's session after pod A's forgery: %v, want not found", err)
	}

	// The node agent's token: events of any session.
	tokAgent := b.token(t, b.agent, false, workloadAudience)
	agentNC, _, err := dialWorkload(t, srv.Addrs.NATS, string(b.agent.UID), tokAgent)
	if err != nil {
		t.Fatalf("connect with the node agent's token: %v", err)
	}
	waitLogLine(t, logFile, "nats connection granted", "kind=node-agent")
	agentEv, err := publishEvent(ctx, agentNC, uidB)
	if err != nil {
		t.Fatalf("node agent publish into pod B's session: %v", err)
	}
	waitForEvent(t, cl, uidB, agentEv.ID)

	// Bad tokens from the real API server, and a tampered one.
	parts := strings.Split(tokA, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(bytes.ReplaceAll(payload, []byte(uidA), []byte(uidB))) + "." + parts[2]
	bad := []struct {
		name, session, token, reason string
	}{
		{"wrong audience", uidA, b.token(t, b.podA, false, kube.Issuer), "token for another audience"},
		{"not bound to a pod", uidA, b.token(t, b.podA, true, workloadAudience), "token not bound to a pod"},
		{"tampered pod uid", uidB, tampered, "token signature not valid"},
		{"alg none", uidA, "eyJhbGciOiJub25lIn0." + parts[1] + ".", "unsigned token"},
		{"garbage", uidA, "garbage", "malformed token"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if nc, _, err := dialWorkload(t, srv.Addrs.NATS, tc.session, tc.token); err == nil {
				nc.Close()
				t.Fatal("connected")
			} else if !errors.Is(err, nats.ErrAuthorization) {
				t.Fatalf("connect: %v, want an authorization violation", err)
			}
			waitLogLine(t, logFile, "nats connection refused", tc.reason)
		})
	}
	page, err := cl.Sessions(ctx, client.SessionQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Sessions) != 2 {
		t.Fatalf("%d sessions stored, want pod A's and pod B's (from the node agent)", len(page.Sessions))
	}

	// The real sidecar, authenticated by pod C's API-server token, records
	// a command's session under pod C's UID.
	uidC := string(b.podC.UID)
	var out, sidecarLog bytes.Buffer
	res, err := runner.Run(ctx, runner.Options{
		Command:     []string{"/bin/sh", "-c", "echo recorded"},
		Session:     uidC,
		NATSURL:     srv.Addrs.NATS,
		Token:       func(context.Context, string) (string, error) { return b.token(t, b.podC, false, workloadAudience), nil },
		SidecarPath: bin("chaperone-sidecar"),
		User:        "natsauth-e2e",
		Sandbox:     newSandbox(t),
		Stdout:      &out,
		Stderr:      &out,
		SidecarLog:  &sidecarLog,
	})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("run: %v (exit %d)\n%s\nsidecar:\n%s", err, res.ExitCode, out.String(), sidecarLog.String())
	}
	evs := waitEnded(t, cl, uidC)
	var ended bool
	for _, e := range evs {
		ended = ended || (e.Kind == event.KindSessionEnd && e.Source == event.SourceSidecar)
	}
	if !ended {
		t.Fatalf("pod C's session has no session.end from the sidecar")
	}
}

// waitForEvent waits until the server stored event id of session.
func waitForEvent(t *testing.T, cl *client.Client, session, id string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var found bool
		err := cl.Events(t.Context(), session, 0, func(e *event.Event) error {
			found = found || e.ID == id
			return nil
		})
		if err == nil && found {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("event %s of session %s not stored: %v", id, session, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
