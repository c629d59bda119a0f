package e2e

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/e2e/kube"
	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/runner"
)

// tcpRelay forwards connections accepted on ip to target, so a process in a
// sandbox reaches a server that listens on the host's loopback only.
func tcpRelay(t *testing.T, ip netip.Addr, target string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", netip.AddrPortFrom(ip, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.DialTimeout("tcp", target, 5*time.Second)
				if err != nil {
					return
				}
				defer u.Close()
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(u, c); _ = u.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
				go func() { _, _ = io.Copy(c, u); _ = c.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
				<-done
				<-done
			}()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

// TestKubectlThroughSidecar runs the real kubectl inside a recorded
// namespace whose only trust is the sidecar's bundle, against the real
// kube-apiserver of the test bed: get, apply, a Secret, delete, and a watch
// cut short. The session must hold the right Kubernetes verbs, resources,
// names and statuses, and never the Secret's value.
func TestKubectlThroughSidecar(t *testing.T) {
	cluster := kube.StartTest(t)
	srv, cl := startServer(t)
	sb := newSandbox(t)
	api := tcpRelay(t, sb.HostIP(), strings.TrimPrefix(cluster.URL(), "https://"))

	caFile := filepath.Join(t.TempDir(), "cluster-ca.crt")
	if err := os.WriteFile(caFile, cluster.CA(), 0o600); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	manifest := `apiVersion: v1
kind: ConfigMap
metadata:
  name: agent-notes
  namespace: default
data:
  plan: "refactor the build"
`
	if err := os.WriteFile(filepath.Join(work, "cm.yaml"), []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	const secretValue = "hunter2-kubectl-e2e"
	script := `set -eu
export KUBECONFIG="$WORK/kubeconfig"
kubectl config set-cluster bed --server="https://$API" --certificate-authority="$CURL_CA_BUNDLE" --tls-server-name=kubernetes.default.svc >/dev/null
kubectl config set-credentials agent --token="$TOKEN" >/dev/null
kubectl config set-context bed --cluster=bed --user=agent >/dev/null
kubectl config use-context bed >/dev/null
kubectl get namespaces -o name
kubectl apply -f "$WORK/cm.yaml"
kubectl get configmap agent-notes -o jsonpath='{.data.plan}'; echo
kubectl create secret generic agent-secret --from-literal=password="$SECRET"
kubectl get secret agent-secret -o yaml >/dev/null
kubectl delete configmap agent-notes
timeout 3 kubectl get configmaps --watch >/dev/null 2>&1 || true
echo done
`
	var out, sidecarLog bytes.Buffer
	res, err := runner.Run(t.Context(), runner.Options{
		Command:     []string{"/bin/sh", "-c", script},
		Env:         []string{"WORK=" + work, "API=" + api.String(), "TOKEN=" + cluster.AdminToken(), "SECRET=" + secretValue, "HOME=" + work},
		NATSURL:     srv.Addrs.NATS,
		Token:       srv.WorkloadToken,
		SidecarPath: bin("chaperone-sidecar"),
		User:        "kubectl-e2e",
		Sandbox:     sb,
		ExtraCA:     []string{caFile},
		SidecarArgs: []string{"--kube-api", api.String()},
		Stdout:      &out,
		Stderr:      &out,
		SidecarLog:  &sidecarLog,
	})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("kubectl script: %v (exit %d)\n%s\nsidecar:\n%s", err, res.ExitCode, out.String(), sidecarLog.String())
	}
	for _, want := range []string{"namespace/default", "configmap/agent-notes created", "refactor the build", "secret/agent-secret created", `configmap "agent-notes" deleted`, "done"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("kubectl output lacks %q:\n%s", want, out.String())
		}
	}

	evs := waitEnded(t, cl, res.Session)
	verifyChain(t, cl, res.Session)
	type key struct{ verb, resource, name string }
	// Statuses per request: kubectl apply reads before it creates (404),
	// and delete waits until the object is gone (404 again).
	got := map[key]map[int]bool{}
	for _, e := range evs {
		raw, _ := event.Encode(e)
		if bytes.Contains(raw, []byte(secretValue)) {
			t.Errorf("event %s (%s) contains the Secret's value", e.ID, e.Kind)
		}
		if bytes.Contains(raw, []byte(cluster.AdminToken())) {
			t.Errorf("event %s (%s) contains the bearer token", e.ID, e.Kind)
		}
		if e.Kind == event.KindK8sRequest {
			k := e.K8sRequest
			kk := key{k.Verb, k.Resource, k.Name}
			if got[kk] == nil {
				got[kk] = map[int]bool{}
			}
			got[kk][k.Status] = true
		}
	}
	for _, want := range []struct {
		key
		status int
	}{
		{key{"list", "namespaces", ""}, 200},
		{key{"create", "configmaps", ""}, 201},
		{key{"get", "configmaps", "agent-notes"}, 200},
		{key{"create", "secrets", ""}, 201},
		{key{"get", "secrets", "agent-secret"}, 200},
		{key{"delete", "configmaps", "agent-notes"}, 200},
		{key{"watch", "configmaps", ""}, 200},
	} {
		statuses, ok := got[want.key]
		if !ok {
			t.Errorf("no k8s.request %s %s %q recorded", want.verb, want.resource, want.name)
			continue
		}
		if !statuses[want.status] {
			t.Errorf("k8s.request %s %s %q statuses %v, want one %d", want.verb, want.resource, want.name, statuses, want.status)
		}
	}
	if t.Failed() {
		t.Logf("k8s requests seen: %v", got)
	}
}
