package main

import (
	"bytes"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/chaperone-dev/chaperone/e2e/kube"
	"github.com/chaperone-dev/chaperone/webhook"
	"github.com/chaperone-dev/chaperone/webhook/certs"
)

// TestKubeAPIServer registers the in-process webhook with a real
// kube-apiserver, lets it fill in its own caBundle, and sees pods and a
// Deployment's pods mutated.
func TestKubeAPIServer(t *testing.T) {
	c := kube.StartTest(t)
	ctx := t.Context()
	cs, err := kubernetes.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := parseFlags([]string{
		"--listen=127.0.0.1:0", "--health-addr=127.0.0.1:0",
		"--cert-dir=" + filepath.Join(t.TempDir(), "certs"), "--dns-names=", "--ips=127.0.0.1",
		"--kubeconfig=" + c.Kubeconfig(), "--renew-interval=100ms",
		"--sidecar-image=chaperone-sidecar:test", "--nats-url=nats://127.0.0.1:4222",
	}, os.Stderr, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	type started struct {
		addr net.Addr
		cm   *certs.Manager
	}
	ready := make(chan started, 1)
	done := make(chan error, 1)
	go func() {
		done <- cfg.serve(ctx, log, func(a net.Addr, m *certs.Manager) { ready <- started{a, m} })
	}()
	var s started
	select {
	case s = <-ready:
	case err := <-done:
		t.Fatalf("webhook: %v", err)
	}
	t.Cleanup(func() {
		if err := <-done; err != nil {
			t.Errorf("webhook: %v", err)
		}
	})

	// Registered without a caBundle: the webhook fills it in.
	url := "https://" + s.addr.String() + "/mutate"
	_, err = cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx,
		webhook.MutatingWebhookConfiguration(cfg.WebhookConfigName, admissionregistrationv1.WebhookClientConfig{URL: &url}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	poll(t, "caBundle filled in by the webhook", func() bool {
		got, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, cfg.WebhookConfigName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range got.Webhooks {
			if !bytes.Equal(w.ClientConfig.CABundle, s.cm.CABundle()) {
				return false
			}
		}
		return true
	})

	review, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	me := review.Status.UserInfo.Username

	const ns = "agents"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "agent", Annotations: map[string]string{
			webhook.AnnotationInject: webhook.ValueEnabled, webhook.AnnotationRequestedBy: "someone-else",
		}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "agent", Image: "example.invalid/agent:1"}}},
	}
	var got *corev1.Pod
	poll(t, "pod created (the default service account exists)", func() bool {
		got, err = cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		return err == nil
	})
	checkInjected(t, got, me)

	// Refusals reach the client with the webhook's message.
	bad := pod.DeepCopy()
	bad.Name, bad.Spec.HostNetwork = "host", true
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, bad, metav1.CreateOptions{}); err == nil || !bytes.Contains([]byte(err.Error()), []byte("hostNetwork")) {
		t.Fatalf("hostNetwork pod: err = %v", err)
	}

	// A Deployment: the template is stamped with the human, and the pod the
	// ReplicaSet controller creates keeps that and gets the sidecar.
	labels := map[string]string{"app": "agent"}
	_, err = cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "agent"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{webhook.AnnotationInject: webhook.ValueEnabled}},
				Spec:       pod.Spec,
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	poll(t, "a pod of the Deployment", func() bool {
		list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=agent"})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Items) == 0 {
			return false
		}
		got = &list.Items[0]
		return true
	})
	checkInjected(t, got, me)
}

func checkInjected(t *testing.T, pod *corev1.Pod, user string) {
	t.Helper()
	if got := pod.Annotations[webhook.AnnotationRequestedBy]; got != user {
		t.Errorf("pod %s requested-by %q, want %q", pod.Name, got, user)
	}
	if len(pod.Spec.InitContainers) < 2 || pod.Spec.InitContainers[0].Name != webhook.InitContainerName ||
		pod.Spec.InitContainers[1].Name != webhook.SidecarContainerName || pod.Spec.InitContainers[1].RestartPolicy == nil {
		t.Fatalf("pod %s init containers not injected (native mode): %+v", pod.Name, pod.Spec.InitContainers)
	}
	if a := pod.Spec.AutomountServiceAccountToken; a == nil || *a {
		t.Errorf("pod %s automountServiceAccountToken not false", pod.Name)
	}
	if pod.Annotations[webhook.AnnotationPlaceholderToken] != webhook.DefaultPlaceholderToken {
		t.Errorf("pod %s placeholder annotation %q", pod.Name, pod.Annotations[webhook.AnnotationPlaceholderToken])
	}
	for _, m := range pod.Spec.Containers[0].VolumeMounts {
		if m.MountPath == webhook.ServiceAccountDir && m.Name != webhook.AgentTokenVolumeName {
			t.Errorf("pod %s agent mounts %s at the token path", pod.Name, m.Name)
		}
	}
}

func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
