package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/chaperone-dev/chaperone/e2e/helm"
	"github.com/chaperone-dev/chaperone/e2e/kube"
	"github.com/chaperone-dev/chaperone/pkg/policy/v1alpha1"
	"github.com/chaperone-dev/chaperone/webhook"
)

// chartRelease and chartNS are the release the chart tests render.
const (
	chartRelease = "chaperone"
	chartNS      = "chaperone"
	// chartKube is the cluster version helm renders for (the bed's).
	chartKube = "1.37.2"
)

// chartDir is charts/chaperone in this checkout.
func chartDir(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller")
	}
	return filepath.Join(filepath.Dir(file), "..", "charts", "chaperone")
}

// runHelm runs the real helm with a private HOME and returns its combined
// output.
func runHelm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), helm.Require(t), args...) //nolint:gosec // the cached helm
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HOME="+home, "HELM_CACHE_HOME="+home+"/cache", "HELM_CONFIG_HOME="+home+"/config", "HELM_DATA_HOME="+home+"/data")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// renderChart runs helm template with extra arguments and returns the
// objects.
func renderChart(t *testing.T, extra ...string) []*unstructured.Unstructured {
	t.Helper()
	args := append([]string{"template", chartRelease, chartDir(t), "--namespace", chartNS, "--kube-version", chartKube, "--include-crds"}, extra...)
	out, err := runHelm(t, args...)
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", extra, err, out)
	}
	var objs []*unstructured.Unstructured
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(out)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			t.Fatalf("rendered YAML: %v\n%s", err, doc)
		}
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
	return objs
}

// find returns the rendered object of kind and name, or nil.
func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

// as converts a rendered object to its typed form.
func as[T any](t *testing.T, o *unstructured.Unstructured) *T {
	t.Helper()
	if o == nil {
		t.Fatal("object not rendered")
	}
	b, err := o.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var v T
	if err := yaml.UnmarshalStrict(b, &v); err != nil {
		t.Fatalf("%s %s: %v", o.GetKind(), o.GetName(), err)
	}
	return &v
}

func kinds(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind())
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TestChartLint: helm lint, also with --strict, is clean.
func TestChartLint(t *testing.T) {
	for _, args := range [][]string{{"lint"}, {"lint", "--strict"}, {"lint", "--strict", "--set", "webhook.certManager.enabled=true,nodeAgent.enabled=false"}} {
		out, err := runHelm(t, append(args, chartDir(t))...)
		if err != nil || !strings.Contains(out, "0 chart(s) failed") || strings.Contains(out, "[WARNING]") || strings.Contains(out, "[ERROR]") {
			t.Errorf("helm %v: %v\n%s", args, err, out)
		}
	}
}

// TestChartSchemaRejects: values.schema.json refuses bad values with
// helm's schema error, before anything is rendered.
func TestChartSchemaRejects(t *testing.T) {
	for _, set := range []string{
		"sidecar.mode=sometimes",
		"sidecar.tokenExpirationSeconds=60",
		"sidecar.placeholderToken=has space",
		"sidecar.image.tag=",
		"webhook.failurePolicy=Maybe",
		"webhook.replicas=0",
		"webhook.renewInterval=soon",
		"server.nats.externalURL=http://nats:4222",
		"server.database.url=mysql://db",
		"server.oidc.issuer=https://issuer.example",
		"nodeAgent.enabled=perhaps",
		"typo=1",
	} {
		out, err := runHelm(t, "template", chartRelease, chartDir(t), "--kube-version", chartKube, "--set", set)
		if err == nil || !strings.Contains(out, "schema") {
			t.Errorf("--set %s accepted (err %v):\n%.300s", set, err, out)
		}
	}
}

// TestChartMatchesWebhook: what the chart renders is what package webhook
// builds: the mutating webhooks (plus the Service to call), the admission
// policy, its binding and parameters, and the sidecar settings the webhook
// reads, equal to its built-in defaults.
func TestChartMatchesWebhook(t *testing.T) {
	objs := renderChart(t)
	want := []string{"ClusterRole", "ClusterRoleBinding", "ConfigMap", "CustomResourceDefinition", "DaemonSet", "Deployment",
		"MutatingWebhookConfiguration", "NetworkPolicy", "PodDisruptionBudget", "Role", "RoleBinding", "Secret", "Service",
		"ServiceAccount", "StatefulSet", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "ValidatingWebhookConfiguration"}
	if got := kinds(objs); !slices.Equal(got, want) {
		t.Errorf("kinds %v, want %v", got, want)
	}
	name := chartRelease + "-webhook"
	mwc := as[admissionregistrationv1.MutatingWebhookConfiguration](t, find(objs, "MutatingWebhookConfiguration", name))
	wantHooks := webhook.MutatingWebhooks(admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{
		Namespace: chartNS, Name: name, Path: new("/mutate"), Port: new(int32(443)),
	}})
	if !apiequality.Semantic.DeepEqual(mwc.Webhooks, wantHooks) {
		t.Errorf("chart webhooks differ from webhook.MutatingWebhooks:\n got %+v\nwant %+v", mwc.Webhooks, wantHooks)
	}
	vwc := as[admissionregistrationv1.ValidatingWebhookConfiguration](t, find(objs, "ValidatingWebhookConfiguration", name))
	wantVHooks := webhook.ValidatingWebhooks(admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{
		Namespace: chartNS, Name: name, Path: new(webhook.PathValidateSessionPolicy), Port: new(int32(443)),
	}})
	if !apiequality.Semantic.DeepEqual(vwc.Webhooks, wantVHooks) {
		t.Errorf("chart validating webhooks differ from webhook.ValidatingWebhooks:\n got %+v\nwant %+v", vwc.Webhooks, wantVHooks)
	}
	serverRole := as[rbacv1.ClusterRole](t, find(objs, "ClusterRole", chartRelease+"-server"))
	wantRules := []rbacv1.PolicyRule{
		{APIGroups: []string{"chaperone.dev"}, Resources: []string{"sessionpolicies"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"chaperone.dev"}, Resources: []string{"sessionpolicies/status"}, Verbs: []string{"update"}},
	}
	if !apiequality.Semantic.DeepEqual(serverRole.Rules, wantRules) {
		t.Errorf("server ClusterRole rules %+v", serverRole.Rules)
	}
	cmName := chartRelease + "-sidecar"
	for _, want := range []struct {
		policy  *admissionregistrationv1.ValidatingAdmissionPolicy
		binding *admissionregistrationv1.ValidatingAdmissionPolicyBinding
	}{
		{webhook.AdmissionPolicy(), webhook.AdmissionPolicyBinding()},
		{webhook.ImagePolicy(), webhook.ImagePolicyBinding(chartNS, cmName)},
	} {
		vap := as[admissionregistrationv1.ValidatingAdmissionPolicy](t, find(objs, "ValidatingAdmissionPolicy", want.policy.Name))
		if !apiequality.Semantic.DeepEqual(vap.Spec, want.policy.Spec) {
			t.Errorf("chart admission policy %s differs from package webhook's", want.policy.Name)
		}
		binding := as[admissionregistrationv1.ValidatingAdmissionPolicyBinding](t, find(objs, "ValidatingAdmissionPolicyBinding", want.binding.Name))
		if !apiequality.Semantic.DeepEqual(binding.Spec, want.binding.Spec) {
			t.Errorf("chart binding %s differs: %+v", want.binding.Name, binding.Spec)
		}
	}

	cm := as[corev1.ConfigMap](t, find(objs, "ConfigMap", cmName))
	def := webhook.DefaultSidecarValues()
	var cfg webhook.Config
	def.Apply(&cfg)
	for k, v := range webhook.PolicyParams(chartNS, cmName, cfg).Data {
		if cm.Data[k] != v {
			t.Errorf("policy parameter %s = %q, want %q", k, cm.Data[k], v)
		}
	}
	file := filepath.Join(t.TempDir(), "sidecar.yaml")
	if err := os.WriteFile(file, []byte(cm.Data["sidecar.yaml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := webhook.LoadSidecarValues(file)
	if err != nil {
		t.Fatal(err)
	}
	def.NATSURL = "nats://" + chartRelease + "-server." + chartNS + ".svc:4222"
	if !apiequality.Semantic.DeepEqual(got, def) {
		t.Errorf("rendered sidecar settings differ from the defaults:\n got %+v\nwant %+v", got, def)
	}

	dep := as[appsv1.Deployment](t, find(objs, "Deployment", name))
	if *dep.Spec.Replicas != 2 {
		t.Errorf("webhook replicas %d", *dep.Spec.Replicas)
	}
	args := strings.Join(dep.Spec.Template.Spec.Containers[0].Args, " ")
	for _, want := range []string{"--sidecar-config=/etc/chaperone/sidecar.yaml", "--webhook-config-name=" + name, "--cert-secret=" + name + "-certs",
		"--validating-webhook-config-name=" + name,
		"--dns-names=" + name + "." + chartNS + ".svc"} {
		if !strings.Contains(args, want) {
			t.Errorf("webhook args lack %q: %s", want, args)
		}
	}
	sts := as[appsv1.StatefulSet](t, find(objs, "StatefulSet", chartRelease+"-server"))
	sargs := strings.Join(sts.Spec.Template.Spec.Containers[0].Args, " ")
	if !strings.Contains(sargs, "--http-addr=127.0.0.1:8080") || !strings.Contains(sargs, "--nats-addr=0.0.0.0:4222") || len(sts.Spec.VolumeClaimTemplates) != 1 {
		t.Errorf("server: embedded NATS and SQLite on a volume expected: %s", sargs)
	}
	if !strings.Contains(sargs, "--kube-policies") {
		t.Errorf("server does not distribute SessionPolicy objects: %s", sargs)
	}
}

// TestChartWithoutClusterPolicies: with server.kubePolicies and
// webhook.validateSessionPolicies off, neither the SessionPolicy webhook
// nor the server's access to SessionPolicy objects is rendered.
func TestChartWithoutClusterPolicies(t *testing.T) {
	objs := renderChart(t, "--set", "server.kubePolicies=false,webhook.validateSessionPolicies=false")
	if slices.Contains(kinds(objs), "ValidatingWebhookConfiguration") {
		t.Error("ValidatingWebhookConfiguration rendered")
	}
	if find(objs, "ClusterRole", chartRelease+"-server") != nil {
		t.Error("server ClusterRole rendered")
	}
	sts := as[appsv1.StatefulSet](t, find(objs, "StatefulSet", chartRelease+"-server"))
	dep := as[appsv1.Deployment](t, find(objs, "Deployment", chartRelease+"-webhook"))
	if args := strings.Join(append(sts.Spec.Template.Spec.Containers[0].Args, dep.Spec.Template.Spec.Containers[0].Args...), " "); strings.Contains(args, "--kube-policies") ||
		strings.Contains(args, "--validating-webhook-config-name") {
		t.Errorf("args: %s", args)
	}
}

// TestChartNonDefault renders non-default values: cert-manager, external
// NATS and database, OIDC, classic sidecars, no node agent, no network
// policies, a ServiceMonitor.
func TestChartNonDefault(t *testing.T) {
	objs := renderChart(t, "--set", strings.Join([]string{
		"webhook.certManager.enabled=true",
		"webhook.failurePolicy=Ignore",
		"server.nats.externalURL=nats://nats.nats.svc:4222",
		"server.database.url=postgres://chaperone@db/chaperone",
		"server.oidc.issuer=https://issuer.example",
		"server.oidc.clientID=chaperone",
		"server.persistence.enabled=false",
		"sidecar.mode=classic",
		"sidecar.image.tag=9.9.9",
		"nodeAgent.enabled=false",
		"networkPolicy.enabled=false",
		"serviceMonitor.enabled=true",
	}, ","))
	got := kinds(objs)
	for _, k := range []string{"Certificate", "Issuer", "ServiceMonitor"} {
		if !slices.Contains(got, k) {
			t.Errorf("%s not rendered", k)
		}
	}
	for _, k := range []string{"DaemonSet", "NetworkPolicy", "Role"} {
		if slices.Contains(got, k) {
			t.Errorf("%s rendered", k)
		}
	}
	name := chartRelease + "-webhook"
	if find(objs, "Secret", name+"-certs") != nil {
		t.Error("self-managed certificate Secret rendered with cert-manager")
	}
	mwc := as[admissionregistrationv1.MutatingWebhookConfiguration](t, find(objs, "MutatingWebhookConfiguration", name))
	if mwc.Annotations["cert-manager.io/inject-ca-from"] != chartNS+"/"+name {
		t.Errorf("no cert-manager CA injection: %v", mwc.Annotations)
	}
	vwc := as[admissionregistrationv1.ValidatingWebhookConfiguration](t, find(objs, "ValidatingWebhookConfiguration", name))
	if vwc.Annotations["cert-manager.io/inject-ca-from"] != chartNS+"/"+name || *vwc.Webhooks[0].FailurePolicy != admissionregistrationv1.Fail {
		t.Errorf("SessionPolicy webhook with cert-manager: %v, failure policy %s", vwc.Annotations, *vwc.Webhooks[0].FailurePolicy)
	}
	for _, h := range mwc.Webhooks {
		if *h.FailurePolicy != admissionregistrationv1.Ignore {
			t.Errorf("%s failure policy %s", h.Name, *h.FailurePolicy)
		}
	}
	dep := as[appsv1.Deployment](t, find(objs, "Deployment", name))
	if args := strings.Join(dep.Spec.Template.Spec.Containers[0].Args, " "); !strings.Contains(args, "--cert-mode=files") {
		t.Errorf("webhook args with cert-manager: %s", args)
	}
	sts := as[appsv1.StatefulSet](t, find(objs, "StatefulSet", chartRelease+"-server"))
	sargs := strings.Join(sts.Spec.Template.Spec.Containers[0].Args, " ")
	for _, want := range []string{"--nats-url=nats://nats.nats.svc:4222", "--database-url=$(DATABASE_URL)", "--oidc-issuer=https://issuer.example", "--http-addr=0.0.0.0:8080"} {
		if !strings.Contains(sargs, want) {
			t.Errorf("server args lack %q: %s", want, sargs)
		}
	}
	if len(sts.Spec.VolumeClaimTemplates) != 0 {
		t.Error("volume claim without persistence")
	}
	cm := as[corev1.ConfigMap](t, find(objs, "ConfigMap", chartRelease+"-sidecar"))
	if !strings.Contains(cm.Data["sidecar.yaml"], "mode: classic") || !strings.Contains(cm.Data["sidecar.yaml"], "natsURL: nats://nats.nats.svc:4222") ||
		cm.Data[webhook.ParamSidecarImage] != "ghcr.io/chaperone-dev/chaperone-sidecar:9.9.9" {
		t.Errorf("sidecar settings: %v", cm.Data)
	}
}

// TestChartAppliesToAPIServer applies the rendered chart to the real
// kube-apiserver: the CRDs for real, every other object as a server-side
// dry run, then the admission objects for real. With no webhook pod behind
// the Service, an opted-in pod is refused and a plain one admitted.
func TestChartAppliesToAPIServer(t *testing.T) {
	c := kube.StartTest(t)
	ctx := t.Context()
	rc := c.RESTConfig()
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	cached := memory.NewMemCacheClient(dc)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(cached)
	createNamespace(t, cs, chartNS, nil)
	createNamespace(t, cs, "agents", nil)

	apply := func(o *unstructured.Unstructured, dryRun bool) error {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(schema.GroupKind{Group: gvk.Group, Kind: gvk.Kind}, gvk.Version)
		if err != nil {
			return err
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == "namespace" {
			ns := o.GetNamespace()
			if ns == "" {
				ns = chartNS
			}
			ri = dyn.Resource(m.Resource).Namespace(ns)
		}
		opts := metav1.ApplyOptions{FieldManager: "chart-e2e", Force: true}
		if dryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		_, err = ri.Apply(ctx, o.GetName(), o, opts)
		return err
	}

	objs := renderChart(t)
	for _, o := range objs {
		if o.GetKind() == "CustomResourceDefinition" {
			if err := apply(o, false); err != nil {
				t.Fatalf("CRD %s: %v", o.GetName(), err)
			}
		}
	}
	cached.Invalidate()
	mapper.Reset()
	for _, o := range objs {
		if o.GetKind() == "CustomResourceDefinition" {
			continue
		}
		if err := apply(o, true); err != nil {
			t.Errorf("dry run of %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	for _, o := range objs {
		switch o.GetKind() {
		case "ConfigMap", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "MutatingWebhookConfiguration",
			"ValidatingWebhookConfiguration", "Service":
			if err := apply(o, false); err != nil {
				t.Fatalf("apply %s %s: %v", o.GetKind(), o.GetName(), err)
			}
		}
	}
	pollAdmission(t, "opted-in pod refused (webhook Service without endpoints)", func() error {
		return createPod(t, cs, "agents", agentPod("annotated", map[string]string{webhook.AnnotationInject: webhook.ValueEnabled}))
	}, denied("failed calling webhook"))
	if err := createPod(t, cs, "agents", agentPod("plain", nil)); err != nil {
		t.Errorf("plain pod refused: %v", err)
	}
	// The SessionPolicy webhook fails closed for policies only.
	sp := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.APIVersion, "kind": v1alpha1.Kind,
		"metadata": map[string]any{"name": "p"},
		"spec":     map[string]any{"rules": []any{map[string]any{"name": "r", "match": "true", "action": "Allow"}}},
	}}
	pollAdmission(t, "SessionPolicy refused (webhook Service without endpoints)", func() error {
		_, err := dyn.Resource(schema.GroupVersionResource{Group: v1alpha1.Group, Version: v1alpha1.Version, Resource: "sessionpolicies"}).
			Create(ctx, sp, metav1.CreateOptions{})
		return err
	}, denied("failed calling webhook"))
	if _, err := cs.CoreV1().ConfigMaps("agents").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "plain"}}, metav1.CreateOptions{}); err != nil {
		t.Errorf("plain ConfigMap refused: %v", err)
	}
}
