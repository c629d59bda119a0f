package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/chaperone-dev/chaperone/e2e/podrunner"
	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/sidecar/certs"
	"github.com/chaperone-dev/chaperone/webhook"
)

// TestPodRunnerClassicSidecar runs a pod injected in classic mode (the
// sidecar an ordinary container whose postStart hook holds the agent until
// it is ready) without an API server: the ConfigMap and the token come
// from a fake client. The agent's request is recorded with the identity
// the webhook stamped.
func TestPodRunnerClassicSidecar(t *testing.T) {
	srv, cl := startServer(t)
	sb := newSandbox(t)
	pub := publicDir(t)
	natsAddr := tcpRelay(t, sb.HostIP(), strings.TrimPrefix(srv.Addrs.NATS, "nats://"))
	up := startUpstream(t, sb.HostIP())
	sidecarBin := filepath.Join(pub, "bin")
	if err := os.Mkdir(sidecarBin, 0o755); err != nil { //nolint:gosec // the sidecar's UID executes from it
		t.Fatal(err)
	}
	copyPublic(t, bin("chaperone-sidecar"), sidecarBin)

	pod := agentPod("classic", map[string]string{webhook.AnnotationInject: webhook.ValueEnabled})
	pod.Namespace, pod.UID, pod.Spec.NodeName, pod.Spec.ServiceAccountName = "agents", "6f1f0a52-classic-e2e", "node-x", "builder"
	pod.Spec.Containers[0].Command = []string{"/bin/sh", "-c", fmt.Sprintf(`curl -sS --max-time 20 "http://%s/hello?name=classic"`, up.http)}
	values := webhook.DefaultSidecarValues()
	values.Mode = webhook.ValuesModeClassic
	values.NATSURL = "nats://" + natsAddr.String()
	var cfg webhook.Config
	values.Apply(&cfg)
	injected, err := webhook.Inject(pod, cfg, webhook.Input{User: authenticationv1.UserInfo{Username: "alice", Groups: []string{"dev"}}})
	if err != nil {
		t.Fatal(err)
	}
	if injected.Spec.Containers[0].Name != webhook.SidecarContainerName || injected.Spec.Containers[0].Lifecycle == nil {
		t.Fatalf("not a classic sidecar: %+v", injected.Spec.Containers[0])
	}

	clusterCA, err := certs.New(certs.Options{Session: "e2e-cluster"})
	if err != nil {
		t.Fatal(err)
	}
	cs := fake.NewClientset(&corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "agents", Name: webhook.RootCAConfigMap},
		Data:       map[string]string{"ca.crt": string(clusterCA.CertPEM())},
	})
	// Without an API server, the server's own issuer stands in for the
	// cluster's: the NATS token (the server's audience) is one it minted
	// for the pod's UID, so the auth callout admits the sidecar; the API
	// server token (default audience) is never used here.
	natsToken, err := srv.WorkloadToken(t.Context(), string(pod.UID))
	if err != nil {
		t.Fatal(err)
	}
	var audiences [][]string
	cs.PrependReactor("create", "serviceaccounts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		tr, ok := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenRequest)
		if !ok || a.GetSubresource() != "token" {
			return false, nil, nil
		}
		audiences = append(audiences, tr.Spec.Audiences)
		tr.Status.Token = "fake-api-server-token"
		if slices.Equal(tr.Spec.Audiences, []string{values.TokenAudience}) {
			tr.Status.Token = natsToken
		}
		return true, tr, nil
	})

	var out buffers
	res, err := podrunner.Run(t.Context(), podrunner.Options{
		Pod: injected, Client: cs, Sandbox: sb, Dir: pub,
		Images:     map[string]string{values.Image.Repository: sidecarBin},
		Background: []string{webhook.SidecarContainerName},
		Output:     out.writer,
	})
	if err != nil || res.ExitCodes["agent"] != 0 {
		out.dump(t)
		t.Fatalf("run: %v, exit codes %v", err, res.ExitCodes)
	}
	if !strings.Contains(out.get("agent"), "hello classic") {
		out.dump(t)
		t.Fatal("agent got no answer")
	}
	if len(audiences) != 2 || len(audiences[0]) != 0 || !slices.Equal(audiences[1], []string{values.TokenAudience}) {
		t.Errorf("token audiences %v, want the API server's default and %s", audiences, values.TokenAudience)
	}
	evs := waitEnded(t, cl, string(pod.UID))
	var start *event.Event
	recorded := false
	for _, e := range evs {
		if e.Kind == event.KindSessionStart {
			start = e
		}
		if e.Kind == event.KindHTTPRequest && strings.Contains(e.HTTPRequest.URL, "name=classic") {
			recorded = true
		}
	}
	if !recorded {
		dumpEvents(t, evs)
		t.Fatal("the agent's request was not recorded")
	}
	if id := start.Identity; id == nil || id.User != "alice" || id.Namespace != "agents" || id.Pod != "classic" ||
		id.ServiceAccount != "builder" || id.Node != "node-x" || len(id.Groups) != 1 {
		t.Errorf("identity %+v", start.Identity)
	}
}
