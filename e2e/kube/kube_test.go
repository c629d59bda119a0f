package kube

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// TestCluster starts one control plane and checks, against it, what the
// e2e tests rely on.
func TestCluster(t *testing.T) {
	c := StartTest(t)
	cs, err := kubernetes.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}

	t.Run("version", func(t *testing.T) {
		v, err := cs.Discovery().ServerVersion()
		if err != nil {
			t.Fatal(err)
		}
		if v.GitVersion != KubeVersion {
			t.Errorf("server version %q, want %q", v.GitVersion, KubeVersion)
		}
	})

	t.Run("kubectl", func(t *testing.T) {
		out, err := exec.CommandContext(t.Context(), "kubectl", "--kubeconfig", c.Kubeconfig(),
			"get", "ns", "-o", "name").CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl get ns: %v\n%s", err, out)
		}
		for _, ns := range []string{"namespace/default", "namespace/kube-system"} {
			if !slices.Contains(strings.Fields(string(out)), ns) {
				t.Errorf("kubectl get ns: no %s in\n%s", ns, out)
			}
		}
	})

	t.Run("deployment", func(t *testing.T) {
		testDeployment(t, c, cs)
	})

	t.Run("token", func(t *testing.T) {
		testToken(t, c, cs)
	})

	t.Run("validating-admission-policy", func(t *testing.T) {
		testPolicy(t, cs)
	})

	t.Run("less-privileged-user", func(t *testing.T) {
		ucs, err := kubernetes.NewForConfig(c.UserRESTConfig())
		if err != nil {
			t.Fatal(err)
		}
		_, err = ucs.CoreV1().Pods(metav1.NamespaceDefault).List(t.Context(), metav1.ListOptions{})
		if !apierrors.IsForbidden(err) {
			t.Fatalf("list pods as %s: %v, want forbidden", DevUser, err)
		}
		if !strings.Contains(err.Error(), `"`+DevUser+`"`) {
			t.Errorf("forbidden error does not name %s: %v", DevUser, err)
		}
	})
}

func testDeployment(t *testing.T, c *Cluster, cs kubernetes.Interface) {
	ctx := t.Context()
	const node = "node-1"
	if err := c.AddNode(ctx, node); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "agent"}
	dep, err := cs.AppsV1().Deployments(metav1.NamespaceDefault).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "agent"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "agent", Image: "example.invalid/agent:1", Command: []string{"sleep", "infinity"},
				}}},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	var rs *appsv1.ReplicaSet
	poll(t, "a ReplicaSet owned by the Deployment", func() bool {
		list, err := cs.AppsV1().ReplicaSets(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range list.Items {
			if ownedBy(list.Items[i].OwnerReferences, dep.UID) {
				rs = &list.Items[i]
				return true
			}
		}
		return false
	})

	var pod *corev1.Pod
	poll(t, "a Pod of the ReplicaSet bound to "+node, func() bool {
		list, err := cs.CoreV1().Pods(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range list.Items {
			if ownedBy(list.Items[i].OwnerReferences, rs.UID) && list.Items[i].Spec.NodeName == node {
				pod = &list.Items[i]
				return true
			}
		}
		return false
	})
	if pod.Spec.ServiceAccountName != "default" {
		t.Errorf("pod service account %q, want default", pod.Spec.ServiceAccountName)
	}
	// The ServiceAccount admission plugin mounts a projected token volume.
	var projected bool
	for _, v := range pod.Spec.Volumes {
		projected = projected || (v.Projected != nil && strings.HasPrefix(v.Name, "kube-api-access-"))
	}
	if !projected {
		t.Errorf("pod has no kube-api-access projected volume: %+v", pod.Spec.Volumes)
	}
	// The root CA publisher gives every namespace the cluster CA.
	poll(t, "configmap kube-root-ca.crt with the cluster CA", func() bool {
		cm, err := cs.CoreV1().ConfigMaps(metav1.NamespaceDefault).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
		return cm.Data["ca.crt"] == string(c.CA())
	})
}

// testPolicy checks that ValidatingAdmissionPolicy is enforced: a policy
// that denies ConfigMaps named "forbidden" comes into force.
func testPolicy(t *testing.T, cs kubernetes.Interface) {
	ctx := t.Context()
	deny := admissionregistrationv1.Deny
	_, err := cs.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(ctx,
		&admissionregistrationv1.ValidatingAdmissionPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "no-forbidden"},
			Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
				MatchConstraints: &admissionregistrationv1.MatchResources{
					ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
						RuleWithOperations: admissionregistrationv1.RuleWithOperations{
							Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
							Rule: admissionregistrationv1.Rule{
								APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"},
							},
						},
					}},
				},
				Validations: []admissionregistrationv1.Validation{{
					Expression: "object.metadata.name != 'forbidden'", Message: "denied by the test policy",
				}},
			},
		}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cs.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx,
		&admissionregistrationv1.ValidatingAdmissionPolicyBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "no-forbidden"},
			Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
				PolicyName:        "no-forbidden",
				ValidationActions: []admissionregistrationv1.ValidationAction{deny},
			},
		}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The policy takes effect once the API server's informers see it.
	poll(t, "denial by the ValidatingAdmissionPolicy", func() bool {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "forbidden"}}
		_, err := cs.CoreV1().ConfigMaps(metav1.NamespaceDefault).Create(ctx, cm, metav1.CreateOptions{})
		switch {
		case err == nil:
			if err := cs.CoreV1().ConfigMaps(metav1.NamespaceDefault).Delete(ctx, cm.Name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			return false
		case strings.Contains(err.Error(), "denied by the test policy"):
			return true
		default:
			t.Fatalf("create configmap: %v", err)
			return false
		}
	})
}

func ownedBy(refs []metav1.OwnerReference, uid types.UID) bool {
	for _, r := range refs {
		if r.UID == uid && r.Controller != nil && *r.Controller {
			return true
		}
	}
	return false
}

func testToken(t *testing.T, c *Cluster, cs kubernetes.Interface) {
	ctx := t.Context()
	tr, err := cs.CoreV1().ServiceAccounts(metav1.NamespaceDefault).CreateToken(ctx, "default",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: []string{Issuer}}},
		metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tr.Status.Token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts, want 3 (a JWS)", len(parts))
	}
	var header struct{ Alg, Kid string }
	var claims struct {
		Iss string
		Sub string
		Aud []string
		Exp int64
	}
	decodeSegment(t, parts[0], &header)
	decodeSegment(t, parts[1], &claims)
	if header.Alg != "RS256" || header.Kid == "" {
		t.Errorf("header %+v, want alg RS256 and a kid", header)
	}
	if claims.Iss != Issuer {
		t.Errorf("iss %q, want %q", claims.Iss, Issuer)
	}
	if claims.Sub != "system:serviceaccount:default:default" {
		t.Errorf("sub %q", claims.Sub)
	}
	if !slices.Contains(claims.Aud, Issuer) {
		t.Errorf("aud %q, want %q", claims.Aud, Issuer)
	}
	if time.Unix(claims.Exp, 0).Before(time.Now()) {
		t.Errorf("token already expired at %d", claims.Exp)
	}

	hc, err := rest.HTTPClientFor(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	var disc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	getJSON(t, hc, c.URL()+"/.well-known/openid-configuration", &disc)
	// The API server points jwks_uri at its own address (there is no
	// --service-account-jwks-uri), so a verifier can fetch it.
	if disc.Issuer != Issuer || disc.JWKSURI != c.URL()+"/openid/v1/jwks" {
		t.Errorf("discovery document %+v, want issuer %s and jwks_uri %s/openid/v1/jwks", disc, Issuer, c.URL())
	}

	// The JWKS at the API server must hold the key that signed the token.
	var jwks struct {
		Keys []struct{ Kid, Kty, Alg, N, E string }
	}
	getJSON(t, hc, c.URL()+"/openid/v1/jwks", &jwks)
	var verified bool
	for _, k := range jwks.Keys {
		if k.Kid != header.Kid || k.Kty != "RSA" {
			continue
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(b64(t, k.N)), E: int(new(big.Int).SetBytes(b64(t, k.E)).Int64())}
		digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], b64(t, parts[2])); err != nil {
			t.Fatalf("token signature does not verify with JWKS key %s: %v", k.Kid, err)
		}
		verified = true
	}
	if !verified {
		t.Fatalf("no RSA key with kid %q in JWKS %+v", header.Kid, jwks)
	}
}

func decodeSegment(t *testing.T, seg string, v any) {
	t.Helper()
	if err := json.Unmarshal(b64(t, seg), v); err != nil {
		t.Fatalf("token segment: %v", err)
	}
}

func b64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("base64url %q: %v", s, err)
	}
	return b
}

func getJSON(t *testing.T, hc *http.Client, url string, v any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, buf.Bytes())
	}
	if err := json.Unmarshal(buf.Bytes(), v); err != nil {
		t.Fatalf("GET %s: %v\n%s", url, err, buf.Bytes())
	}
}

// poll calls cond every 100ms until it holds, failing the test after a
// minute.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("no %s within a minute", what)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestVersionsMatchTools keeps KubeVersion and EtcdVersion, which name the
// cache directory, in step with the tools module that build.sh builds.
func TestVersionsMatchTools(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("tools", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"k8s.io/kubernetes " + KubeVersion,
		"go.etcd.io/etcd/server/v3 " + EtcdVersion,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("tools/go.mod does not require %s", want)
		}
	}
}

// TestFindBinDirMissing checks that a missing binary fails with the build
// command rather than anything quieter.
func TestFindBinDirMissing(t *testing.T) {
	t.Setenv(EnvBin, t.TempDir())
	_, err := FindBinDir()
	if err == nil {
		t.Fatal("FindBinDir found binaries in an empty directory")
	}
	if !strings.Contains(err.Error(), "build.sh") {
		t.Errorf("error does not say how to build: %v", err)
	}
	t.Log(err)
}

// TestStopCleansUp checks that Stop ends every component and removes the
// directory Start created.
func TestStopCleansUp(t *testing.T) {
	bin := Require(t)
	c, err := Start(t.Context(), Options{BinDir: bin})
	if err != nil {
		t.Fatal(err)
	}
	dir := c.Dir()
	pids := make([]int, 0, len(c.procs))
	for _, p := range c.procs {
		pids = append(pids, p.cmd.Process.Pid)
	}
	if len(pids) != len(binaries) {
		t.Errorf("%d processes, want %d", len(pids), len(binaries))
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	for _, pid := range pids {
		// The processes were reaped by Stop, so their pids are gone.
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("process %d still exists after Stop", pid)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s still exists after Stop (%v)", dir, err)
	}
}

// TestFindBinDirStale checks that binaries built from another tools/go.sum
// are refused with the rebuild command.
func TestFindBinDirStale(t *testing.T) {
	root := t.TempDir()
	t.Setenv(EnvBin, "")
	t.Setenv(EnvCache, root)
	dir := CacheBinDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, b := range binaries {
		if err := os.WriteFile(filepath.Join(dir, b), []byte("#!/bin/true\n"), 0o755); err != nil { //nolint:gosec // a fake executable
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, ".stamp"), []byte("stale\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := FindBinDir()
	if err == nil || !strings.Contains(err.Error(), "rebuild") || !strings.Contains(err.Error(), EnvCache+"="+root) {
		t.Fatalf("FindBinDir with a stale stamp: %v, want a rebuild command naming %s", err, EnvCache)
	}
	sum, ok := toolsSum()
	if !ok {
		t.Fatal("tools/go.sum not found next to the source")
	}
	if err := os.WriteFile(filepath.Join(dir, ".stamp"), []byte(sum+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := FindBinDir(); err != nil || got != dir {
		t.Fatalf("FindBinDir with a fresh stamp = %q, %v; want %q", got, err, dir)
	}
}
