package e2e

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/chaperone-dev/chaperone/e2e/kube"
	"github.com/chaperone-dev/chaperone/pkg/client"
	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/localserver"
	"github.com/chaperone-dev/chaperone/pkg/runner"
	"github.com/chaperone-dev/chaperone/sidecar/gate"
)

const kubeDenyPolicy = `apiVersion: chaperone.dev/v1alpha1
kind: SessionPolicy
metadata:
  name: agents
spec:
  rules:
  - name: keep-secrets
    match: request.k8s.resource == "secrets" && request.k8s.verb == "delete"
    action: Deny
    reason: agents may not delete secrets
`

// TestCredentialBrokering is issue 4 item 4 with the real kubectl, the
// real sidecar and the real kube-apiserver: kubectl holds only the
// placeholder; the sidecar, which alone reads a real ServiceAccount token
// (made with TokenRequest), swaps it in on requests to the API server, so
// kubectl acts as the ServiceAccount (`kubectl auth whoami` says so). The
// same placeholder sent to another host is refused and never arrives. A
// Deny rule refuses a Secret delete with a metav1.Status that kubectl
// prints. The token never reaches the session, the spool, SQLite or the
// JetStream store.
func TestCredentialBrokering(t *testing.T) {
	cluster := kube.StartTest(t)
	ctx := t.Context()
	cs, err := kubernetes.NewForConfig(cluster.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	const ns, sa = "default", "agent"
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "agent-edit", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "edit"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: ns}},
	}
	if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db"}, StringData: map[string]string{"password": "pw"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	exp := int64(3600)
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	realToken := tr.Status.Token
	const placeholder = "chaperone-placeholder-token"

	// The sidecar runs under its own uid: its token file and spool live
	// outside t.TempDir's private tree.
	shared, err := os.MkdirTemp("", "chaperone-e2e-creds-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(shared) })
	//nolint:gosec // searchable by the sidecar's uid
	if err := os.Chmod(shared, 0o711); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(shared, "token")
	if err := os.WriteFile(tokenFile, []byte(realToken), 0o400); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(tokenFile, runner.DefaultProxyUID, runner.DefaultProxyUID); err != nil {
		t.Fatal(err)
	}
	spool := filepath.Join(shared, "spool")

	dataDir := t.TempDir()
	srv, err := localserver.Start(ctx, localserver.Options{Binary: bin("chaperone-server"), DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	cl, err := client.New(srv.Addrs.HTTP)
	if err != nil {
		t.Fatal(err)
	}

	sb := newSandbox(t)
	api := tcpRelay(t, sb.HostIP(), strings.TrimPrefix(cluster.URL(), "https://"))
	up := startEchoUpstream(t, sb.HostIP())
	caFile := filepath.Join(t.TempDir(), "cluster-ca.crt")
	if err := os.WriteFile(caFile, cluster.CA(), 0o600); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	script := `set -u
export KUBECONFIG="$WORK/kubeconfig"
kubectl config set-cluster bed --server="https://$API" --certificate-authority="$CURL_CA_BUNDLE" --tls-server-name=kubernetes.default.svc >/dev/null
kubectl config set-credentials agent --token="$TOKEN" >/dev/null
kubectl config set-context bed --cluster=bed --user=agent --namespace=default >/dev/null
kubectl config use-context bed >/dev/null
echo "== whoami"; kubectl auth whoami -o jsonpath='{.status.userInfo.username}'; echo
echo "== create"; kubectl create configmap brokered --from-literal=k=v
echo "== get"; kubectl get configmap brokered -o jsonpath='{.data.k}'; echo
echo "== delete-secret"; kubectl delete secret db 2>&1
echo "== steal"; curl -sS -o - -w '\nstatus=%{http_code}\n' -H "Authorization: Bearer $TOKEN" "http://$UP/echo"
echo "== end"
`
	var out, sidecarLog bytes.Buffer
	res, err := runner.Run(ctx, runner.Options{
		Command:     []string{"/bin/sh", "-c", script},
		Env:         []string{"WORK=" + work, "API=" + api.String(), "UP=" + up.String(), "TOKEN=" + placeholder, "HOME=" + work},
		NATSURL:     srv.Addrs.NATS,
		SidecarPath: bin("chaperone-sidecar"),
		User:        "creds-e2e",
		Sandbox:     sb,
		SpoolDir:    spool,
		ExtraCA:     []string{caFile},
		Policy:      []byte(kubeDenyPolicy),
		Policies:    cl,
		Token:       cl.WorkloadToken,
		SidecarArgs: []string{"--kube-api", api.String(), "--token-file", tokenFile, "--placeholder-token", placeholder},
		Stdout:      &out,
		Stderr:      &out,
		SidecarLog:  &sidecarLog,
	})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("script: %v (exit %d)\n%s\nsidecar:\n%s", err, res.ExitCode, out.String(), sidecarLog.String())
	}
	parts := map[string]string{}
	for _, p := range strings.Split(out.String(), "== ")[1:] {
		name, rest, _ := strings.Cut(p, "\n")
		parts[name] = rest
	}
	for name, want := range map[string][]string{
		"whoami":        {"system:serviceaccount:default:agent"},
		"create":        {"configmap/brokered created"},
		"get":           {"v"},
		"delete-secret": {"Forbidden", "agents may not delete secrets", "keep-secrets"},
		"steal":         {"status=403", "placeholder"},
	} {
		for _, w := range want {
			if !strings.Contains(parts[name], w) {
				t.Errorf("%s: output lacks %q:\n%s", name, w, parts[name])
			}
		}
	}
	if strings.Contains(parts["steal"], "/echo") {
		t.Errorf("the placeholder reached the non-API upstream:\n%s", parts["steal"])
	}
	if _, err := cs.CoreV1().Secrets(ns).Get(ctx, "db", metav1.GetOptions{}); err != nil {
		t.Errorf("the denied delete went through: %v", err)
	}

	evs := waitEnded(t, cl, res.Session)
	verifyChain(t, cl, res.Session)
	// Which requests carried a credential: kubectl's dispatcher asks for
	// /version without one.
	type streamKey struct {
		conn   string
		stream uint64
	}
	authed := map[streamKey]bool{}
	for _, e := range evs {
		if e.Kind == event.KindHTTPRequest && len(e.HTTPRequest.Headers["Authorization"]) > 0 {
			authed[streamKey{e.Conn, e.HTTPRequest.Stream}] = true
		}
	}
	var as []string
	denied := false
	for _, e := range evs {
		switch e.Kind {
		case event.KindK8sRequest:
			if !authed[streamKey{e.Conn, e.K8sRequest.Stream}] {
				if e.K8sRequest.As != "" {
					t.Errorf("k8s.request without a credential recorded as %q", e.K8sRequest.As)
				}
				continue
			}
			as = append(as, e.K8sRequest.As)
			if e.K8sRequest.Resource == "secrets" && e.K8sRequest.Verb == "delete" {
				denied = e.K8sRequest.Status == 403 && e.Verdict == gate.VerdictDeny
			}
		case event.KindPolicyDecision:
			if e.PolicyDecision.Rule == gate.RuleCredential && e.Verdict != gate.VerdictDeny {
				t.Errorf("credential decision verdict %q", e.Verdict)
			}
		}
	}
	if len(as) < 4 {
		t.Errorf("only %d k8s.request events", len(as))
	}
	for _, a := range as {
		if a != "system:serviceaccount:default:agent" {
			t.Errorf("k8s.request recorded as %q", a)
		}
	}
	if !denied {
		t.Error("no k8s.request for the denied Secret delete with status 403 and verdict deny")
	}
	if t.Failed() {
		raw, _ := json.Marshal(as)
		t.Logf("as: %s", raw)
		dumpEvents(t, evs)
	}

	// The real token is nowhere in what was recorded or stored.
	for _, e := range evs {
		raw, _ := event.Encode(e)
		if bytes.Contains(raw, []byte(realToken)) {
			t.Errorf("event %s (%s) holds the real token", e.ID, e.Kind)
		}
	}
	if err := srv.Stop(); err != nil {
		t.Logf("stop server: %v", err)
	}
	files := 0
	for _, dir := range []string{dataDir, spool} {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			files++
			if bytes.Contains(data, []byte(realToken)) {
				t.Errorf("%s holds the real token", path)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if files == 0 {
		t.Fatal("nothing searched")
	}
	if strings.Contains(sidecarLog.String(), realToken) {
		t.Error("the sidecar's log holds the real token")
	}
}
