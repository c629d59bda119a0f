package e2e

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/chaperone-dev/chaperone/e2e/kube"
	"github.com/chaperone-dev/chaperone/pkg/kubepolicy"
	"github.com/chaperone-dev/chaperone/pkg/localserver"
	"github.com/chaperone-dev/chaperone/pkg/natsbus"
	"github.com/chaperone-dev/chaperone/pkg/policy"
	"github.com/chaperone-dev/chaperone/pkg/policy/v1alpha1"
	"github.com/chaperone-dev/chaperone/pkg/server"
	"github.com/chaperone-dev/chaperone/webhook"
)

// spConfig names the ValidatingWebhookConfiguration of the test.
const spConfig = "chaperone-webhook"

// Policies the test applies with kubectl.
const (
	spGood = `apiVersion: chaperone.dev/v1alpha1
kind: SessionPolicy
metadata:
  name: guard
spec:
  rules:
    - name: no-secret-reads
      match: request.k8s.resource == "secrets" && request.k8s.verb in ["get", "list", "watch"]
      action: Deny
      reason: agents do not read secrets
`
	spEdited = `apiVersion: chaperone.dev/v1alpha1
kind: SessionPolicy
metadata:
  name: guard
spec:
  rules:
    - name: no-secret-reads
      match: request.k8s.resource == "secrets"
      action: Deny
      reason: agents do not touch secrets
`
	// The second rule's CEL does not parse.
	spBad = `apiVersion: chaperone.dev/v1alpha1
kind: SessionPolicy
metadata:
  name: %s
spec:
  rules:
    - name: fine
      match: "true"
      action: Allow
    - name: half-written
      match: request.k8s.verb ==
      action: Deny
`
)

// TestSessionPolicyInCluster: SessionPolicy objects in a real API server.
// With the real chaperone-webhook registered, real kubectl is refused a
// policy whose CEL does not compile, naming the rule and the error, and
// may apply a good one; the real chaperone-server watching the cluster
// distributes it compiled in CHAPERONE_POLICY/current and marks it
// Ready=True with the set's hash; an edit changes the hash; with the
// webhook gone, a broken policy gets in but is refused by the server
// (Ready=False, CompileError) while the last good set stays; deleting the
// policies withdraws them.
func TestSessionPolicyInCluster(t *testing.T) {
	c := kube.StartTest(t)
	ctx := t.Context()
	cs, err := kubernetes.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	dc, err := dynamic.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	kubectl := func(stdin string, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig=" + c.Kubeconfig()}, args...)...) //nolint:gosec // the test's own arguments
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	// The CRD as the chart ships it.
	if out, err := kubectl("", "apply", "-f", filepath.Join("..", "charts", "chaperone", "crds")); err != nil {
		t.Fatalf("kubectl apply crds: %v\n%s", err, out)
	}
	if out, err := kubectl("", "wait", "--for=condition=Established", "--timeout=60s", "crd/sessionpolicies.chaperone.dev"); err != nil {
		t.Fatalf("crd not established: %v\n%s", err, out)
	}

	// 1. Refused when applied.
	startPolicyWebhook(t, c, cs)
	pollAdmission(t, "the validating webhook comes into force", func() error {
		out, err := kubectl(strings.ReplaceAll(spBad, "%s", "probe"), "apply", "--dry-run=server", "-f", "-")
		if err != nil {
			return errors.New(out)
		}
		return nil
	}, denied("denied the request"))
	out, err := kubectl(strings.ReplaceAll(spBad, "%s", "broken"), "apply", "-f", "-")
	if err == nil {
		t.Fatalf("kubectl applied a policy that does not compile:\n%s", out)
	}
	t.Logf("kubectl refused the broken policy:\n%s", out)
	for _, want := range []string{`admission webhook "` + webhook.HookSessionPolicies + `" denied the request`,
		`policy "broken" rule "half-written"`, "spec.rules[1].match", "Syntax error"} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl output lacks %q:\n%s", want, out)
		}
	}
	if _, err := dc.Resource(kubepolicy.Resource).Get(ctx, "broken", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("refused policy exists: %v", err)
	}
	if out, err := kubectl(spGood, "apply", "-f", "-"); err != nil || !strings.Contains(out, "created") {
		t.Fatalf("kubectl apply good policy: %v\n%s", err, out)
	}

	// 2. Distributed by the server watching the cluster.
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "nats-password")
	if err := os.WriteFile(pwFile, []byte("e2e-sessionpolicy-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	srv, err := localserver.Start(ctx, localserver.Options{Binary: bin("chaperone-server"), DataDir: data,
		Args: []string{"--kube-policies", "--kubeconfig=" + c.Kubeconfig(), "--nats-password-file=" + pwFile}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("stop server: %v", err)
		}
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(data, "server.log")); err == nil {
				t.Logf("server log:\n%s", b)
			}
		}
	})
	kv := policyBucket(t, srv.Addrs.NATS, "e2e-sessionpolicy-password")

	first := waitCurrent(t, kv, "the good policy distributed", func(s *policy.Set) bool {
		ps := s.Policies()
		return len(ps) == 1 && ps[0].Name == "guard" && strings.Contains(ps[0].Spec.Rules[0].Match, `"list"`)
	})
	waitReady(t, dc, "guard", metav1.ConditionTrue, v1alpha1.ReasonDistributed, first.Hash())
	// The distributed set decides: the rule holds secret reads.
	d := first.For(policy.Identity{Namespace: "agents"}).Decide(&policy.Request{K8s: policy.K8s{Verb: "get", Resource: "secrets"}})
	if d.Action != v1alpha1.ActionDeny || d.Rule != "no-secret-reads" {
		t.Fatalf("decision %+v", d)
	}

	// An edit changes the distributed hash.
	if out, err := kubectl(spEdited, "apply", "-f", "-"); err != nil || !strings.Contains(out, "configured") {
		t.Fatalf("kubectl apply edit: %v\n%s", err, out)
	}
	edited := waitCurrent(t, kv, "the edit distributed", func(s *policy.Set) bool { return s.Hash() != first.Hash() })
	if r := edited.Policies()[0].Spec.Rules[0]; r.Match != `request.k8s.resource == "secrets"` {
		t.Fatalf("distributed rule %+v", r)
	}
	waitReady(t, dc, "guard", metav1.ConditionTrue, v1alpha1.ReasonDistributed, edited.Hash())

	// 3. Without the webhook a broken policy gets in; the server refuses it.
	if err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(ctx, spConfig, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	pollAdmission(t, "the validating webhook is gone", func() error {
		out, err := kubectl(strings.ReplaceAll(spBad, "%s", "broken"), "apply", "-f", "-")
		if err != nil {
			return errors.New(out)
		}
		return nil
	}, func(err error) bool { return err == nil })
	st := waitReady(t, dc, "broken", metav1.ConditionFalse, v1alpha1.ReasonCompileError, "")
	if msg := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady).Message; !strings.Contains(msg, `rule "half-written"`) ||
		!strings.Contains(msg, "Syntax error") {
		t.Errorf("CompileError message %q", msg)
	}
	// The status was written by the pass that refused to publish: the
	// bucket still holds the edited set, and guard's version is in it.
	if got := readCurrent(t, kv); got == nil || got.Hash() != edited.Hash() {
		t.Fatalf("distributed set changed after a broken policy: %v", got)
	}
	waitReady(t, dc, "guard", metav1.ConditionTrue, v1alpha1.ReasonDistributed, edited.Hash())

	// 4. Deleting withdraws: first the broken one (the set is as it was),
	// then guard (no policy at all).
	if out, err := kubectl("", "delete", "sessionpolicy", "broken"); err != nil {
		t.Fatalf("kubectl delete: %v\n%s", err, out)
	}
	if out, err := kubectl("", "delete", "sessionpolicy", "guard"); err != nil {
		t.Fatalf("kubectl delete: %v\n%s", err, out)
	}
	poll(t, "the policy withdrawn", func() bool { return readCurrent(t, kv) == nil })
}

// startPolicyWebhook runs the real chaperone-webhook against c serving TLS
// on loopback, registers the SessionPolicy ValidatingWebhookConfiguration of
// package webhook for it, and returns once the webhook filled in the
// configuration's caBundle.
func startPolicyWebhook(t *testing.T, c *kube.Cluster, cs kubernetes.Interface) {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	var logBuf lockedBuffer
	cmd := exec.CommandContext(ctx, bin("chaperone-webhook"), //nolint:gosec // the binary under test
		"--listen="+addr, "--health-addr=127.0.0.1:0", "--cert-dir="+filepath.Join(dir, "certs"),
		"--ips=127.0.0.1", "--dns-names=", "--kubeconfig="+c.Kubeconfig(), "--webhook-config-name=",
		"--validating-webhook-config-name="+spConfig, "--renew-interval=500ms", "--native-sidecar=true",
		"--nats-url=nats://127.0.0.1:4222")
	cmd.Stdout, cmd.Stderr = &logBuf, &logBuf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("webhook log:\n%s", logBuf.String())
		}
	})
	url := "https://" + addr + webhook.PathValidateSessionPolicy
	api := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	if _, err := api.Create(ctx, webhook.ValidatingWebhookConfiguration(spConfig, admissionregistrationv1.WebhookClientConfig{URL: &url}),
		metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "the webhook fills in its caBundle", func() bool {
		got, err := api.Get(ctx, spConfig, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-exited:
			t.Fatalf("webhook exited:\n%s", logBuf.String())
		default:
		}
		return len(got.Webhooks[0].ClientConfig.CABundle) > 0
	})
}

// policyBucket opens CHAPERONE_POLICY as the server's own NATS user.
func policyBucket(t *testing.T, url, password string) jetstream.KeyValue {
	t.Helper()
	nc, err := natsbus.Connect(t.Context(), url, nats.UserInfo(server.DefaultNATSUser, password))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var kv jetstream.KeyValue
	poll(t, "the policy bucket", func() bool {
		kv, err = js.KeyValue(t.Context(), policy.Bucket)
		return err == nil
	})
	return kv
}

// readCurrent returns the set under KeyCluster, nil when there is none.
func readCurrent(t *testing.T, kv jetstream.KeyValue) *policy.Set {
	t.Helper()
	e, err := kv.Get(t.Context(), policy.KeyCluster)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	s, err := policy.Unmarshal(e.Value())
	if err != nil {
		t.Fatalf("distributed bundle: %v", err)
	}
	return s
}

// waitCurrent polls KeyCluster until ok holds for its set.
func waitCurrent(t *testing.T, kv jetstream.KeyValue, what string, ok func(*policy.Set) bool) *policy.Set {
	t.Helper()
	var s *policy.Set
	poll(t, what, func() bool {
		s = readCurrent(t, kv)
		return s != nil && ok(s)
	})
	return s
}

// waitReady polls the policy's status until its Ready condition has status
// and reason, for its current generation, and (unless empty) the set hash.
func waitReady(t *testing.T, dc dynamic.Interface, name string, status metav1.ConditionStatus, reason, hash string) v1alpha1.SessionPolicyStatus {
	t.Helper()
	var st v1alpha1.SessionPolicyStatus
	var last string
	deadline := time.Now().Add(60 * time.Second)
	for {
		u, err := dc.Resource(kubepolicy.Resource).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var p v1alpha1.SessionPolicy
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.UnstructuredContent(), &p); err != nil {
			t.Fatal(err)
		}
		st = p.Status
		if c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady); c != nil {
			last = string(c.Status) + "/" + c.Reason + ": " + c.Message + " hash " + st.SetHash
			if c.Status == status && c.Reason == reason && c.ObservedGeneration == p.Generation && st.SetHash == hash {
				return st
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("sessionpolicy %s: Ready not %s/%s (hash %q); last %s", name, status, reason, hash, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// poll waits up to a minute for cond.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within a minute", what)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
