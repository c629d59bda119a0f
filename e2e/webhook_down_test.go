package e2e

import (
	"net"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/chaperone-dev/chaperone/e2e/kube"
	"github.com/chaperone-dev/chaperone/webhook"
)

// Names of the fail-closed tests' fixtures.
const (
	downSystemNS = "chaperone-system"
	downConfig   = "chaperone-webhook"
	downImage    = "ghcr.io/chaperone-dev/chaperone-sidecar:e2e"
)

// addCap adds a capability to c's security context.
func addCap(c *corev1.Container, cp corev1.Capability) {
	c.SecurityContext.Capabilities.Add = append(c.SecurityContext.Capabilities.Add, cp)
}

// deadURL returns an https URL on loopback where nothing listens.
func deadURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return "https://" + addr + "/mutate"
}

// installAdmission applies the admission objects of package webhook (the
// ones the chart ships): the policy's parameters, the policy and its
// binding, and, unless failure is empty, the mutating webhooks pointing at
// url with that failure policy.
func installAdmission(t *testing.T, cs kubernetes.Interface, url string, failure admissionregistrationv1.FailurePolicyType) {
	t.Helper()
	ctx := t.Context()
	cfg := webhook.Config{SidecarImage: downImage}
	if _, err := cs.CoreV1().ConfigMaps(downSystemNS).Create(ctx, webhook.PolicyParams(downSystemNS, webhook.PolicyParamsName, cfg), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	createPolicies(t, cs)
	if failure != "" {
		setWebhooks(t, cs, url, failure)
	}
}

// createPolicies creates both admission policies and their bindings, the
// image policy's parameters from downSystemNS/webhook.PolicyParamsName.
func createPolicies(t *testing.T, cs kubernetes.Interface) {
	t.Helper()
	ctx := t.Context()
	for _, p := range []*admissionregistrationv1.ValidatingAdmissionPolicy{webhook.AdmissionPolicy(), webhook.ImagePolicy()} {
		if _, err := cs.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range []*admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		webhook.AdmissionPolicyBinding(), webhook.ImagePolicyBinding(downSystemNS, webhook.PolicyParamsName),
	} {
		if _, err := cs.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, b, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// setWebhooks creates or replaces the mutating webhook configuration.
func setWebhooks(t *testing.T, cs kubernetes.Interface, url string, failure admissionregistrationv1.FailurePolicyType) {
	t.Helper()
	ctx := t.Context()
	api := cs.AdmissionregistrationV1().MutatingWebhookConfigurations()
	mwc := webhook.MutatingWebhookConfiguration(downConfig, admissionregistrationv1.WebhookClientConfig{URL: &url})
	for i := range mwc.Webhooks {
		mwc.Webhooks[i].FailurePolicy = &failure
	}
	if err := api.Delete(ctx, downConfig, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	if _, err := api.Create(ctx, mwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// agentPod is a plain agent pod in ns with the given annotations.
func agentPod(name string, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "agent", Image: "example.invalid/agent:1", Command: []string{"sleep", "infinity"},
		}}},
	}
}

// injectedPod is what the webhook would make of an opted-in agent pod:
// a hand-made imitation, for the cases where the webhook is not involved.
func injectedPod(t *testing.T, name string) *corev1.Pod {
	t.Helper()
	pod := agentPod(name, map[string]string{webhook.AnnotationInject: webhook.ValueEnabled})
	out, err := webhook.Inject(pod, webhook.Config{SidecarImage: downImage, NATSURL: "nats://127.0.0.1:4222"}, webhook.Input{})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// pollAdmission retries create until want reports true for its error,
// while the API server picks up newly created admission objects.
func pollAdmission(t *testing.T, what string, create func() error, want func(error) bool) error {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := create()
		if want(err) {
			return err
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: last result %v", what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func createPod(t *testing.T, cs kubernetes.Interface, ns string, pod *corev1.Pod) error {
	t.Helper()
	_, err := cs.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{})
	if err == nil {
		_ = cs.CoreV1().Pods(ns).Delete(t.Context(), pod.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))})
	}
	return err
}

func denied(substr string) func(error) bool {
	return func(err error) bool { return err != nil && strings.Contains(err.Error(), substr) }
}

func createNamespace(t *testing.T, cs kubernetes.Interface, name string, labels map[string]string) {
	t.Helper()
	_, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
	if err != nil && (labels != nil || !apierrors.IsAlreadyExists(err)) {
		t.Fatal(err)
	}
	// Pods need the namespace's default service account.
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := cs.CoreV1().ServiceAccounts(name).Get(t.Context(), "default", metav1.GetOptions{})
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("default service account of %s: %v", name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestWebhookDownFailsClosed registers the webhooks and the admission
// policy against the real kube-apiserver with the webhook's endpoint
// unreachable: opted-in pods and workloads are refused (fail closed), while
// everything that did not opt in is admitted (no cluster-wide outage).
func TestWebhookDownFailsClosed(t *testing.T) {
	c := kube.StartTest(t)
	cs, err := kubernetes.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	createNamespace(t, cs, downSystemNS, nil)
	createNamespace(t, cs, "plain", nil)
	createNamespace(t, cs, "recorded", map[string]string{webhook.LabelInject: webhook.ValueEnabled})
	installAdmission(t, cs, deadURL(t), admissionregistrationv1.Fail)

	failedCall := denied("failed calling webhook")
	optedIn := map[string]string{webhook.AnnotationInject: webhook.ValueEnabled}
	pollAdmission(t, "annotated pod refused while the webhook is down",
		func() error { return createPod(t, cs, "plain", agentPod("annotated", optedIn)) }, failedCall)
	pollAdmission(t, "pod in a labelled namespace refused while the webhook is down",
		func() error { return createPod(t, cs, "recorded", agentPod("by-namespace", nil)) }, failedCall)

	// Not opted in: admitted at once.
	for _, tc := range []struct {
		ns  string
		pod *corev1.Pod
	}{
		{"plain", agentPod("unannotated", nil)},
		{"recorded", agentPod("opted-out", map[string]string{webhook.AnnotationInject: webhook.ValueDisabled})},
		{"kube-system", agentPod("system", nil)},
		{"default", agentPod("other-value", map[string]string{webhook.AnnotationInject: "yes"})},
	} {
		if err := createPod(t, cs, tc.ns, tc.pod); err != nil {
			t.Errorf("%s/%s not opted in but refused: %v", tc.ns, tc.pod.Name, err)
		}
	}

	// Workloads: an opted-in template is refused, another admitted.
	deploy := func(name string, ann map[string]string) *appsv1.Deployment {
		labels := map[string]string{"app": name}
		pod := agentPod(name, ann)
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: appsv1.DeploymentSpec{
				Replicas: new(int32(0)),
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: ann}, Spec: pod.Spec},
			},
		}
	}
	if _, err := cs.AppsV1().Deployments("plain").Create(ctx, deploy("agent", optedIn), metav1.CreateOptions{}); !failedCall(err) {
		t.Errorf("opted-in Deployment: err = %v, want the webhook failure", err)
	}
	if _, err := cs.AppsV1().Deployments("plain").Create(ctx, deploy("web", nil), metav1.CreateOptions{}); err != nil {
		t.Errorf("plain Deployment refused: %v", err)
	}

	// With failurePolicy Ignore the dead webhook lets the pod through, and
	// the admission policy alone refuses it.
	setWebhooks(t, cs, deadURL(t), admissionregistrationv1.Ignore)
	err = pollAdmission(t, "policy refuses an uninjected opted-in pod",
		func() error { return createPod(t, cs, "plain", agentPod("annotated", optedIn)) }, denied(webhook.PolicyName))
	if !strings.Contains(err.Error(), "chaperone-init") {
		t.Errorf("policy message: %v", err)
	}
	if err := createPod(t, cs, "plain", agentPod("unannotated", nil)); err != nil {
		t.Errorf("plain pod refused with the webhook on Ignore: %v", err)
	}
}

// TestAdmissionPolicyAlone creates hand-made pods that pretend to be
// injected, with no webhook configured at all: the ValidatingAdmissionPolicy
// inside the API server admits the faithful imitation and refuses each one
// that breaks a rule.
func TestAdmissionPolicyAlone(t *testing.T) {
	c := kube.StartTest(t)
	cs, err := kubernetes.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	createNamespace(t, cs, downSystemNS, nil)
	createNamespace(t, cs, "agents", nil)
	createNamespace(t, cs, "recorded", map[string]string{webhook.LabelInject: webhook.ValueEnabled})
	installAdmission(t, cs, "", "")

	// The policies compiled without type errors (their status controller
	// runs).
	deadline := time.Now().Add(60 * time.Second)
	for _, name := range []string{webhook.PolicyName, webhook.ImagePolicyName} {
		for {
			p, err := cs.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if p.Status.ObservedGeneration == p.Generation && p.Status.TypeChecking != nil {
				if w := p.Status.TypeChecking.ExpressionWarnings; len(w) > 0 {
					t.Fatalf("policy %s type-check warnings: %+v", name, w)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("policy %s status not observed", name)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	const msgID = "UID or GID reserved"
	const msgCaps = "NET_ADMIN, NET_RAW or ALL"
	const msgSwitch = "could switch to the sidecar's UID"
	pollAdmission(t, "policy active", func() error {
		return createPod(t, cs, "agents", agentPod("bare", map[string]string{webhook.AnnotationInject: webhook.ValueEnabled}))
	}, denied("chaperone-init"))

	agent := func(p *corev1.Pod) *corev1.Container {
		for i := range p.Spec.Containers {
			if p.Spec.Containers[i].Name == "agent" {
				return &p.Spec.Containers[i]
			}
		}
		t.Fatal("no agent container")
		return nil
	}
	for _, tc := range []struct {
		name string
		ns   string
		mut  func(p *corev1.Pod)
		want string // "" admits
		// policy that refuses; default webhook.PolicyName
		policy string
	}{
		{name: "faithful", mut: func(*corev1.Pod) {}},
		{name: "faithful-by-namespace", ns: "recorded", mut: func(p *corev1.Pod) { delete(p.Annotations, webhook.AnnotationInject) }},
		{name: "opted-out-bare", ns: "recorded", mut: func(p *corev1.Pod) {
			*p = *agentPod(p.Name, map[string]string{webhook.AnnotationInject: webhook.ValueDisabled})
		}},
		{name: "host-network", mut: func(p *corev1.Pod) { p.Spec.HostNetwork = true }, want: "hostNetwork"},
		{name: "no-sidecar", mut: func(p *corev1.Pod) { p.Spec.InitContainers = p.Spec.InitContainers[:1] }, want: "no chaperone-sidecar"},
		{name: "init-not-first", mut: func(p *corev1.Pod) {
			p.Spec.InitContainers = append([]corev1.Container{{Name: "setup", Image: "example.invalid/setup:1"}}, p.Spec.InitContainers...)
		}, want: "first init container"},
		{name: "init-other-uid", mut: func(p *corev1.Pod) {
			for i, a := range p.Spec.InitContainers[0].Args {
				if strings.HasPrefix(a, "--proxy-uid=") {
					p.Spec.InitContainers[0].Args[i] = "--proxy-uid=1000"
				}
			}
		}, want: "first init container"},
		{name: "foreign-sidecar-image", mut: func(p *corev1.Pod) { p.Spec.InitContainers[1].Image = "evil.invalid/sidecar:1" }, want: "configured sidecar image", policy: webhook.ImagePolicyName},
		{name: "agent-uid", mut: func(p *corev1.Pod) { agent(p).SecurityContext.RunAsUser = new(int64(15137)) }, want: msgID},
		{name: "pod-uid", mut: func(p *corev1.Pod) {
			p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: new(int64(15137))}
		}, want: msgID},
		{name: "pod-uid-overridden", mut: func(p *corev1.Pod) {
			p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: new(int64(15137))}
			agent(p).SecurityContext.RunAsUser = new(int64(1000))
		}},
		{name: "agent-gid", mut: func(p *corev1.Pod) { agent(p).SecurityContext.RunAsGroup = new(int64(15137)) }, want: msgID},
		{name: "net-admin", mut: func(p *corev1.Pod) { addCap(agent(p), "NET_ADMIN") }, want: msgCaps},
		{name: "cap-net-raw", mut: func(p *corev1.Pod) { addCap(agent(p), "cap_net_raw") }, want: msgCaps},
		{name: "privileged", mut: func(p *corev1.Pod) {
			// The API server itself refuses privileged with allowPrivilegeEscalation false.
			agent(p).SecurityContext.Privileged, agent(p).SecurityContext.AllowPrivilegeEscalation = new(true), nil
		}, want: msgCaps},
		{name: "setuid", mut: func(p *corev1.Pod) { addCap(agent(p), "SETUID") }, want: msgSwitch},
		{name: "escalation", mut: func(p *corev1.Pod) { agent(p).SecurityContext.AllowPrivilegeEscalation = nil }, want: msgSwitch},
		{name: "keeps-setgid", mut: func(p *corev1.Pod) { agent(p).SecurityContext.Capabilities.Drop = []corev1.Capability{"SETUID"} }, want: msgSwitch},
		{name: "drops-all", mut: func(p *corev1.Pod) { agent(p).SecurityContext.Capabilities.Drop = []corev1.Capability{"ALL"} }},
		{name: "init-agent-net-admin", mut: func(p *corev1.Pod) {
			p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: "setup", Image: "example.invalid/setup:1",
				SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: new(false), Capabilities: &corev1.Capabilities{
					Add: []corev1.Capability{"NET_RAW"}, Drop: []corev1.Capability{"ALL"},
				}}})
		}, want: msgCaps},
		{name: "harmless-caps", mut: func(p *corev1.Pod) { addCap(agent(p), "CHOWN") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := tc.ns
			if ns == "" {
				ns = "agents"
			}
			policy := tc.policy
			if policy == "" {
				policy = webhook.PolicyName
			}
			pod := injectedPod(t, tc.name)
			tc.mut(pod)
			err := createPod(t, cs, ns, pod)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "'"+policy+"'")):
				t.Fatalf("err = %v, want policy %s's %q", err, policy, tc.want)
			}
		})
	}

	// kubectl debug on an injected pod: an ephemeral container asking for
	// NET_ADMIN is refused, and so is one that keeps root's means to switch
	// users; a restricted one is admitted.
	pod := injectedPod(t, "debugged")
	got, err := cs.CoreV1().Pods("agents").Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	debug := func(name string, sc *corev1.SecurityContext) error {
		p, err := cs.CoreV1().Pods("agents").Get(ctx, got.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
			Name: name, Image: "example.invalid/debug:1", SecurityContext: sc,
		}})
		_, err = cs.CoreV1().Pods("agents").UpdateEphemeralContainers(ctx, p.Name, p, metav1.UpdateOptions{})
		return err
	}
	if err := debug("sniff", &corev1.SecurityContext{AllowPrivilegeEscalation: new(false), Capabilities: &corev1.Capabilities{
		Add: []corev1.Capability{"NET_ADMIN"}, Drop: []corev1.Capability{"ALL"},
	}}); err == nil || !strings.Contains(err.Error(), msgCaps) {
		t.Errorf("ephemeral NET_ADMIN container: err = %v", err)
	}
	if err := debug("root", nil); err == nil || !strings.Contains(err.Error(), msgSwitch) {
		t.Errorf("ephemeral container that may switch users: err = %v", err)
	}
	restricted := &corev1.SecurityContext{AllowPrivilegeEscalation: new(false), Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}
	if err := debug("look", restricted); err != nil {
		t.Errorf("restricted ephemeral container refused: %v", err)
	}

	// Without its parameters the image policy lets pods through (else it
	// would refuse every pod of the cluster), and the injection rules
	// still hold.
	if err := cs.CoreV1().ConfigMaps(downSystemNS).Delete(ctx, webhook.PolicyParamsName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	foreign := injectedPod(t, "foreign-no-params")
	foreign.Spec.InitContainers[1].Image = "evil.invalid/sidecar:1"
	pollAdmission(t, "image policy without parameters admits", func() error { return createPod(t, cs, "agents", foreign) },
		func(err error) bool { return err == nil })
	if err := createPod(t, cs, "agents", agentPod("plain", nil)); err != nil {
		t.Errorf("plain pod refused without policy parameters: %v", err)
	}
	if err := createPod(t, cs, "agents", agentPod("bare-no-params", map[string]string{webhook.AnnotationInject: webhook.ValueEnabled})); err == nil ||
		!strings.Contains(err.Error(), "chaperone-init") {
		t.Errorf("uninjected opted-in pod without policy parameters: err = %v", err)
	}
}
