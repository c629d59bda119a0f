package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/chaperone-dev/chaperone/e2e/kube"
	"github.com/chaperone-dev/chaperone/e2e/podrunner"
	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/webhook"
)

// buffers collects each container's output.
type buffers struct {
	mu sync.Mutex
	m  map[string]*lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (b *buffers) writer(name string) io.Writer {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = map[string]*lockedBuffer{}
	}
	if b.m[name] == nil {
		b.m[name] = &lockedBuffer{}
	}
	return b.m[name]
}

func (b *buffers) get(name string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m[name] == nil {
		return ""
	}
	return b.m[name].String()
}

func (b *buffers) dump(t *testing.T) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for name, buf := range b.m {
		t.Logf("container %s output:\n%s", name, buf.String())
	}
}

// publicDir is a directory every UID of the pod can traverse and read.
func publicDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "chaperone-pod-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { //nolint:gosec // the pod's UIDs must traverse it
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// copyPublic copies src into dir, readable and executable by all.
func copyPublic(t *testing.T, src, dir string) string {
	t.Helper()
	b, err := os.ReadFile(src) //nolint:gosec // test fixtures
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, filepath.Base(src))
	if err := os.WriteFile(dst, b, 0o755); err != nil { //nolint:gosec // a binary or CA file for the pod's UIDs
		t.Fatal(err)
	}
	return dst
}

// startWebhook runs the real chaperone-webhook binary against c, serving
// TLS on loopback with its own certificate, with the sidecar settings file
// the chart would render, and registers it with the webhook configuration
// and admission policy of package webhook. It returns once the webhook
// filled in its caBundle.
func startWebhook(t *testing.T, c *kube.Cluster, cs kubernetes.Interface, values webhook.SidecarValues) {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	b, err := yaml.Marshal(values)
	if err != nil {
		t.Fatal(err)
	}
	valuesFile := filepath.Join(dir, "sidecar.yaml")
	if err := os.WriteFile(valuesFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	var logBuf lockedBuffer
	cmd := exec.CommandContext(ctx, bin("chaperone-webhook"), //nolint:gosec // the binary under test
		"--listen="+addr, "--health-addr=127.0.0.1:0", "--cert-dir="+filepath.Join(dir, "certs"),
		"--ips=127.0.0.1", "--dns-names=", "--kubeconfig="+c.Kubeconfig(), "--webhook-config-name="+downConfig,
		"--sidecar-config="+valuesFile, "--renew-interval=500ms", "--native-sidecar=true")
	cmd.Stdout, cmd.Stderr = &logBuf, &logBuf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("webhook log:\n%s", logBuf.String())
		}
	})
	createNamespace(t, cs, downSystemNS, nil)
	cfg := webhook.Config{}
	values.Apply(&cfg)
	if _, err := cs.CoreV1().ConfigMaps(downSystemNS).Create(ctx, webhook.PolicyParams(downSystemNS, webhook.PolicyParamsName, cfg), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	createPolicies(t, cs)
	url := "https://" + addr + "/mutate"
	if _, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx,
		webhook.MutatingWebhookConfiguration(downConfig, admissionregistrationv1.WebhookClientConfig{URL: &url}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		got, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, downConfig, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Webhooks[0].ClientConfig.CABundle) > 0 {
			return
		}
		if cmd.ProcessState != nil || time.Now().After(deadline) {
			t.Fatalf("webhook did not fill in its caBundle:\n%s", logBuf.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitPod returns the first pod in ns matching selector for which ok holds.
func waitPod(t *testing.T, cs kubernetes.Interface, ns, selector string, ok func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		list, err := cs.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			t.Fatal(err)
		}
		for i := range list.Items {
			if p := &list.Items[i]; p.Spec.NodeName != "" && ok(p) {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pod %s in %s became what the test waits for; have %d", selector, ns, len(list.Items))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestInjectedPodRuns is the pod that really runs: a Deployment
// created without the opt-in gets an untouched pod; a developer opts it in
// with kubectl patch, the real webhook (serving TLS to the real API server)
// injects the controller-manager's new pod, and the pod runner runs that
// pod as processes: the init container's rules, the native sidecar with its
// downward-API identity and real projected token, then the agent's curl.
// The server records the agent's HTTP and HTTPS requests under the pod's
// UID with the pod's identity and the developer as requester. The agent,
// root in its container, can neither take the redirect rules down nor
// become the sidecar's UID (by setuid or a setuid binary of that owner).
func TestInjectedPodRuns(t *testing.T) {
	c := kube.StartTest(t)
	ctx := t.Context()
	cs, err := kubernetes.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddNode(ctx, "node-1"); err != nil {
		t.Fatal(err)
	}
	// The server trusts the test bed's service-account issuer, as in a
	// cluster: the sidecar presents the pod's projected NATS token to the
	// auth callout.
	createNamespace(t, cs, "chaperone-system", nil)
	if _, err := cs.CoreV1().ServiceAccounts("chaperone-system").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "chaperone-server"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	srv, cl, _ := startClusterServer(t, &kubeBed{cluster: c, cs: cs})
	sb := newSandbox(t)
	pub := publicDir(t)
	natsAddr := tcpRelay(t, sb.HostIP(), strings.TrimPrefix(srv.Addrs.NATS, "nats://"))
	up := startUpstream(t, sb.HostIP())
	tlsUp := startTLSUpstream(t, sb.HostIP())
	upstreamCA := copyPublic(t, tlsUp.caFile, pub)
	sidecarBin := filepath.Join(pub, "bin")
	if err := os.Mkdir(sidecarBin, 0o755); err != nil { //nolint:gosec // the sidecar's UID executes from it
		t.Fatal(err)
	}
	copyPublic(t, bin("chaperone-sidecar"), sidecarBin)

	values := webhook.DefaultSidecarValues()
	values.NATSURL = "nats://" + natsAddr.String()
	values.ExtraArgs = []string{"--extra-ca=" + upstreamCA}
	startWebhook(t, c, cs, values)

	const ns = "agents"
	createNamespace(t, cs, ns, nil)
	// The developer may change Deployments in the namespace, nothing more.
	if _, err := cs.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "deployer"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "list", "patch", "update"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "deployer"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "deployer"},
		Subjects:   []rbacv1.Subject{{Kind: "User", Name: kube.DevUser}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	script := fmt.Sprintf(`set -u
curl -sS --max-time 20 "http://%[1]s/hello?name=plain"; echo
curl -sS --max-time 20 --resolve upstream.test:%[3]d:%[2]s "https://upstream.test:%[3]d/hello?name=tls"; echo
if %[4]s init --uninstall >/dev/null 2>&1; then echo RULES-REMOVED; else echo rules-kept; fi
if setpriv --reuid=15137 --regid=15137 --clear-groups curl -sS --max-time 20 "http://%[1]s/hello?name=switched"; then echo; echo SWITCHED; else echo switch-denied; fi
cp "$(command -v curl)" "$HOME/c" && chown 15137:15137 "$HOME/c" && chmod 6755 "$HOME/c" && "$HOME/c" -sS --max-time 20 "http://%[1]s/hello?name=suid"; echo
curl -sS --max-time 20 "http://%[1]s/hello?name=after"; echo
`, up.http, tlsUp.addr.Addr(), tlsUp.addr.Port(), filepath.Join(sidecarBin, "chaperone-sidecar"))
	labels := map[string]string{"app": "agent"}
	_, err = cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "agent"},
		Spec: appsv1.DeploymentSpec{
			Replicas: new(int32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "agent", Image: "curlimages/curl:8.11.0",
					Command: []string{"/bin/sh", "-c", script},
				}}},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	plain := waitPod(t, cs, ns, "app=agent", func(*corev1.Pod) bool { return true })
	if webhook.Injected(&plain.Spec) || plain.Annotations[webhook.AnnotationRequestedBy] != "" {
		t.Fatalf("pod without the opt-in was changed: %+v", plain.Spec.InitContainers)
	}

	// The developer opts the Deployment in with the real kubectl.
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, c.CA(), 0o600); err != nil {
		t.Fatal(err)
	}
	dev := c.UserRESTConfig()
	patch := exec.CommandContext(ctx, "kubectl", "--server="+c.URL(), "--token="+dev.BearerToken, "--certificate-authority="+caFile, //nolint:gosec // the test's own cluster
		"--namespace="+ns, "patch", "deployment", "agent", "--type=merge",
		"-p", `{"spec":{"template":{"metadata":{"annotations":{"chaperone.dev/inject":"enabled"}}}}}`)
	patch.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	if out, err := patch.CombinedOutput(); err != nil {
		t.Fatalf("kubectl patch: %v\n%s", err, out)
	}
	pod := waitPod(t, cs, ns, "app=agent", func(p *corev1.Pod) bool { return webhook.Injected(&p.Spec) })
	if got := pod.Annotations[webhook.AnnotationRequestedBy]; got != kube.DevUser {
		t.Fatalf("requested-by %q, want %q", got, kube.DevUser)
	}
	if pod.Spec.InitContainers[0].Image != values.Image.Ref() || pod.Spec.InitContainers[1].Resources.Limits.Memory().String() != "512Mi" {
		t.Errorf("sidecar not from the settings file: %+v", pod.Spec.InitContainers[1])
	}

	var out buffers
	res, err := podrunner.Run(ctx, podrunner.Options{
		Pod: pod, Client: cs, Sandbox: sb, Dir: pub,
		Images: map[string]string{values.Image.Repository: sidecarBin},
		Output: out.writer,
	})
	if err != nil {
		out.dump(t)
		t.Fatal(err)
	}
	agentOut := out.get("agent")
	if res.ExitCodes["agent"] != 0 || res.ExitCodes[webhook.SidecarContainerName] != 0 {
		out.dump(t)
		t.Fatalf("exit codes %v", res.ExitCodes)
	}
	for _, want := range []string{"hello plain", "hello tls over HTTP/", "rules-kept", "switch-denied", "hello suid", "hello after"} {
		if !strings.Contains(agentOut, want) {
			out.dump(t)
			t.Fatalf("agent output lacks %q:\n%s", want, agentOut)
		}
	}
	if strings.Contains(agentOut, "RULES-REMOVED") || strings.Contains(agentOut, "SWITCHED") {
		t.Fatalf("the agent escaped the redirect:\n%s", agentOut)
	}

	session := string(pod.UID)
	evs := waitEnded(t, cl, session)
	verifyChain(t, cl, session)
	s, err := cl.Session(ctx, session)
	if err != nil {
		t.Fatal(err)
	}
	if s.User != kube.DevUser || s.Namespace != ns || s.Pod != pod.Name || s.ServiceAccount != "default" || s.Origin != "pod" {
		t.Errorf("session identity %+v", s)
	}
	seen := map[string]bool{}
	for _, e := range evs {
		if e.Kind == event.KindSessionStart && (e.Identity == nil || e.Identity.PodUID != session || e.Identity.Node != "node-1") {
			t.Errorf("session.start identity %+v", e.Identity)
		}
		if e.Kind == event.KindHTTPRequest {
			for _, name := range []string{"plain", "tls", "suid", "after"} {
				if strings.Contains(e.HTTPRequest.URL, "name="+name) {
					seen[name] = true
				}
			}
		}
	}
	for _, name := range []string{"plain", "tls", "suid", "after"} {
		if !seen[name] {
			dumpEvents(t, evs)
			t.Fatalf("request %q not recorded", name)
		}
	}
}
