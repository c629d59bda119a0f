package webhook

import (
	"fmt"
	"strconv"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chaperone-dev/chaperone/pkg/policy/v1alpha1"
	"github.com/chaperone-dev/chaperone/sidecar/redirect"
)

// Names of the admission objects; the chart ships the same (see
// charts/chaperone/files, written by `make generate` from this file).
const (
	// PolicyName names the ValidatingAdmissionPolicy of the injection rules
	// and its binding.
	PolicyName = "chaperone.dev-injected-pods"
	// ImagePolicyName names the policy (and binding) that pins the sidecar
	// image to the one in a parameter ConfigMap.
	ImagePolicyName = "chaperone.dev-sidecar-image"
	// PolicyParamsName is the default name of the ConfigMap holding the
	// image policy's parameter (the chart uses its sidecar ConfigMap).
	PolicyParamsName = "chaperone-admission-policy"
	// ParamSidecarImage is the data key of the sidecar image in the
	// parameter ConfigMap.
	ParamSidecarImage = "sidecarImage"
)

// Names of the mutating webhooks, one per kind of object and way of opting
// in, so each is called only for objects that opted in.
const (
	HookPodsNamespace      = "pods.namespace.chaperone.dev"
	HookPodsAnnotation     = "pods.annotation.chaperone.dev"
	HookWorkloadsNamespace = "workloads.namespace.chaperone.dev"
	HookWorkloadsAnnot     = "workloads.annotation.chaperone.dev"
)

// HookSessionPolicies names the validating webhook that compiles
// SessionPolicy objects when they are applied.
const HookSessionPolicies = "sessionpolicies.chaperone.dev"

// CEL expressions of the opt-in, shared by the webhook match conditions and
// the admission policy.
var (
	podInject      = fmt.Sprintf("object.metadata.?annotations[?%q].orValue('')", AnnotationInject)
	templateInject = fmt.Sprintf("object.spec.?template.?metadata.?annotations[?%[1]q].orValue("+
		"object.spec.?jobTemplate.?spec.?template.?metadata.?annotations[?%[1]q].orValue(''))", AnnotationInject)
	namespaceInject = fmt.Sprintf("namespaceObject.metadata.?labels[?%q].orValue('')", LabelInject)
)

// MutatingWebhooks returns the webhooks of the MutatingWebhookConfiguration,
// all calling client with failure policy Fail. They see only objects that
// opted in: pods and workloads (their pod template) annotated
// chaperone.dev/inject=enabled in any namespace but kube-system, and those
// not annotated "disabled" in namespaces labelled chaperone.dev/inject=
// enabled. Everything else never reaches the webhook, so while it is down
// only opted-in objects are refused, never the rest of the cluster.
func MutatingWebhooks(client admissionregistrationv1.WebhookClientConfig) []admissionregistrationv1.MutatingWebhook {
	ops := []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update}
	pods := []admissionregistrationv1.RuleWithOperations{{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
		Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}, Scope: new(admissionregistrationv1.NamespacedScope)},
	}}
	workloads := []admissionregistrationv1.RuleWithOperations{
		{Operations: ops, Rule: admissionregistrationv1.Rule{APIGroups: []string{"apps"}, APIVersions: []string{"v1"},
			Resources: []string{"deployments", "statefulsets", "replicasets", "daemonsets"}, Scope: new(admissionregistrationv1.NamespacedScope)}},
		{Operations: ops, Rule: admissionregistrationv1.Rule{APIGroups: []string{"batch"}, APIVersions: []string{"v1"},
			Resources: []string{"jobs", "cronjobs"}, Scope: new(admissionregistrationv1.NamespacedScope)}},
	}
	labelled := &metav1.LabelSelector{MatchLabels: map[string]string{LabelInject: ValueEnabled}}
	notLabelled := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: LabelInject, Operator: metav1.LabelSelectorOpNotIn, Values: []string{ValueEnabled}},
		{Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: []string{metav1.NamespaceSystem}},
	}}
	hook := func(name string, rules []admissionregistrationv1.RuleWithOperations, ns *metav1.LabelSelector, cond, expr string) admissionregistrationv1.MutatingWebhook {
		return admissionregistrationv1.MutatingWebhook{
			Name:                    name,
			ClientConfig:            client,
			Rules:                   rules,
			FailurePolicy:           new(admissionregistrationv1.Fail),
			MatchPolicy:             new(admissionregistrationv1.Equivalent),
			NamespaceSelector:       ns,
			ObjectSelector:          &metav1.LabelSelector{},
			SideEffects:             new(admissionregistrationv1.SideEffectClassNone),
			TimeoutSeconds:          new(int32(10)),
			AdmissionReviewVersions: []string{"v1"},
			ReinvocationPolicy:      new(admissionregistrationv1.IfNeededReinvocationPolicy),
			MatchConditions:         []admissionregistrationv1.MatchCondition{{Name: cond, Expression: expr}},
		}
	}
	return []admissionregistrationv1.MutatingWebhook{
		hook(HookPodsNamespace, pods, labelled, "not-opted-out", podInject+" != '"+ValueDisabled+"'"),
		hook(HookPodsAnnotation, pods, notLabelled, "opted-in", podInject+" == '"+ValueEnabled+"'"),
		hook(HookWorkloadsNamespace, workloads, labelled, "not-opted-out", templateInject+" != '"+ValueDisabled+"'"),
		hook(HookWorkloadsAnnot, workloads, notLabelled, "opted-in", templateInject+" == '"+ValueEnabled+"'"),
	}
}

// MutatingWebhookConfiguration returns the webhook configuration named name
// whose webhooks call client.
func MutatingWebhookConfiguration(name string, client admissionregistrationv1.WebhookClientConfig) *admissionregistrationv1.MutatingWebhookConfiguration {
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks:   MutatingWebhooks(client),
	}
}

// ValidatingWebhooks returns the webhooks of the
// ValidatingWebhookConfiguration: one that sends SessionPolicy creates and
// updates to client (path PathValidateSessionPolicy) to be compiled. Its
// failure policy is Fail, so a policy cannot slip in uncompiled while the
// webhook is down; it matches nothing but sessionpolicies, so a webhook
// outage blocks policy changes only, never the rest of the cluster (and
// chaperone-server still refuses to distribute a policy that does not
// compile, see its Ready condition).
func ValidatingWebhooks(client admissionregistrationv1.WebhookClientConfig) []admissionregistrationv1.ValidatingWebhook {
	return []admissionregistrationv1.ValidatingWebhook{{
		Name:         HookSessionPolicies,
		ClientConfig: client,
		Rules: []admissionregistrationv1.RuleWithOperations{{
			Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
			Rule: admissionregistrationv1.Rule{APIGroups: []string{v1alpha1.Group}, APIVersions: []string{v1alpha1.Version},
				Resources: []string{"sessionpolicies"}, Scope: new(admissionregistrationv1.ClusterScope)},
		}},
		FailurePolicy:           new(admissionregistrationv1.Fail),
		MatchPolicy:             new(admissionregistrationv1.Equivalent),
		NamespaceSelector:       &metav1.LabelSelector{},
		ObjectSelector:          &metav1.LabelSelector{},
		SideEffects:             new(admissionregistrationv1.SideEffectClassNone),
		TimeoutSeconds:          new(int32(10)),
		AdmissionReviewVersions: []string{"v1"},
	}}
}

// ValidatingWebhookConfiguration returns the validating webhook
// configuration named name whose webhooks call client.
func ValidatingWebhookConfiguration(name string, client admissionregistrationv1.WebhookClientConfig) *admissionregistrationv1.ValidatingWebhookConfiguration {
	return &admissionregistrationv1.ValidatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks:   ValidatingWebhooks(client),
	}
}

// optedIn is the CEL match condition of the policies: the pod's annotation
// says enabled, or its namespace's label does and the annotation does not
// say disabled.
var optedIn = admissionregistrationv1.MatchCondition{
	Name: "opted-in",
	Expression: fmt.Sprintf("%[1]s == %[2]q || (%[1]s != %[3]q && namespaceObject != null && %[4]s == %[2]q)",
		podInject, ValueEnabled, ValueDisabled, namespaceInject),
}

// podRules are what the policies check: pod creation and the ephemeral
// containers `kubectl debug` adds.
var podRules = &admissionregistrationv1.MatchResources{
	ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{
		{RuleWithOperations: admissionregistrationv1.RuleWithOperations{
			Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
			Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
		}},
		{RuleWithOperations: admissionregistrationv1.RuleWithOperations{
			Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Update},
			Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods/ephemeralcontainers"}},
		}},
	},
}

// ours is the CEL list of the names of Chaperone's containers.
var ours = fmt.Sprintf("[%q, %q]", InitContainerName, SidecarContainerName)

// AdmissionPolicy returns the ValidatingAdmissionPolicy that the API server
// evaluates itself, so it holds while the webhook is down or was bypassed: a
// pod that opted in (by annotation, or by namespace label without the
// "disabled" annotation) must carry chaperone-init, redirecting for the
// sidecar's UID, as its first init container and a chaperone-sidecar
// (native or classic); it must not use the host network; and none of its
// own containers (init, ordinary or ephemeral) may run as the sidecar's UID
// or GID, be privileged, add NET_ADMIN, NET_RAW or ALL, or keep the means
// to switch users (privilege escalation, SETUID, SETGID).
//
// It has no parameters, so nothing outside it can make it refuse pods that
// did not opt in.
func AdmissionPolicy() *admissionregistrationv1.ValidatingAdmissionPolicy {
	uid := strconv.FormatUint(uint64(redirect.DefaultProxyUID), 10)
	gid := strconv.FormatUint(uint64(redirect.DefaultProxyGID), 10)
	agentChecks := func(list string) []admissionregistrationv1.Validation {
		return []admissionregistrationv1.Validation{
			{
				Expression: list + ".all(c, c.?securityContext.?runAsUser.orValue(object.spec.?securityContext.?runAsUser.orValue(-1)) != " + uid +
					" && c.?securityContext.?runAsGroup.orValue(object.spec.?securityContext.?runAsGroup.orValue(-1)) != " + gid + ")",
				Message: "chaperone: a container of this pod runs as the UID or GID reserved for the chaperone sidecar (" + uid + "), whose traffic is not recorded",
				Reason:  new(metav1.StatusReasonForbidden),
			},
			{
				Expression: list + ".all(c, !c.?securityContext.?privileged.orValue(false) && !c.?securityContext.?capabilities.?add.orValue([]).exists(x, " +
					"x.upperAscii() in ['NET_ADMIN', 'NET_RAW', 'ALL', 'CAP_NET_ADMIN', 'CAP_NET_RAW', 'CAP_ALL']))",
				Message: "chaperone: a container of this pod is privileged or adds NET_ADMIN, NET_RAW or ALL, which could undo the traffic redirect",
				Reason:  new(metav1.StatusReasonForbidden),
			},
			{
				Expression: list + ".all(c, !c.?securityContext.?allowPrivilegeEscalation.orValue(true) && " +
					"!c.?securityContext.?capabilities.?add.orValue([]).exists(x, x.upperAscii() in ['SETUID', 'SETGID', 'CAP_SETUID', 'CAP_SETGID']) && " +
					"(c.?securityContext.?capabilities.?drop.orValue([]).exists(x, x.upperAscii() in ['ALL', 'CAP_ALL']) || " +
					"(c.?securityContext.?capabilities.?drop.orValue([]).exists(x, x.upperAscii() in ['SETUID', 'CAP_SETUID']) && " +
					"c.?securityContext.?capabilities.?drop.orValue([]).exists(x, x.upperAscii() in ['SETGID', 'CAP_SETGID']))))",
				Message: "chaperone: a container of this pod could switch to the sidecar's UID; it must set allowPrivilegeEscalation: false " +
					"and drop SETUID and SETGID (the webhook does; for kubectl debug use --profile=restricted)",
				Reason: new(metav1.StatusReasonForbidden),
			},
		}
	}
	validations := []admissionregistrationv1.Validation{
		{
			Expression: "!object.spec.?hostNetwork.orValue(false)",
			Message:    "chaperone: hostNetwork pods share the node's network namespace and cannot be recorded",
			Reason:     new(metav1.StatusReasonForbidden),
		},
		{
			Expression: fmt.Sprintf("size(variables.inits) > 0 && variables.inits[0].name == %q && variables.inits[0].?args.orValue([]).exists(a, a == '--proxy-uid=%s')",
				InitContainerName, uid),
			Message: "chaperone: this pod opted in to recording but its first init container is not chaperone-init (is the chaperone webhook running?)",
			Reason:  new(metav1.StatusReasonForbidden),
		},
		{
			Expression: fmt.Sprintf("variables.inits.exists(c, c.name == %[1]q && c.?restartPolicy.orValue('') == 'Always') || object.spec.containers.exists(c, c.name == %[1]q)",
				SidecarContainerName),
			Message: "chaperone: this pod opted in to recording but has no chaperone-sidecar container (is the chaperone webhook running?)",
			Reason:  new(metav1.StatusReasonForbidden),
		},
	}
	validations = append(validations, agentChecks("variables.agents")...)
	validations = append(validations, agentChecks("object.spec.?ephemeralContainers.orValue([])")...)
	return &admissionregistrationv1.ValidatingAdmissionPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: PolicyName},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy:    new(admissionregistrationv1.Fail),
			MatchConstraints: podRules.DeepCopy(),
			MatchConditions:  []admissionregistrationv1.MatchCondition{optedIn},
			Variables: []admissionregistrationv1.Variable{
				{Name: "inits", Expression: "object.spec.?initContainers.orValue([])"},
				{Name: "agents", Expression: fmt.Sprintf("(variables.inits + object.spec.containers).filter(c, !(c.name in %s))", ours)},
			},
			Validations: validations,
		},
	}
}

// ImagePolicy returns the ValidatingAdmissionPolicy that requires
// chaperone-init and chaperone-sidecar of opted-in pods to use the sidecar
// image named in its parameter ConfigMap, so no other program can run
// with the sidecar's exemption. A binding without its ConfigMap would refuse
// every pod in the cluster (parameters are resolved before match
// conditions), so ImagePolicyBinding allows when the ConfigMap is missing.
func ImagePolicy() *admissionregistrationv1.ValidatingAdmissionPolicy {
	image := fmt.Sprintf("params.data[%q]", ParamSidecarImage)
	return &admissionregistrationv1.ValidatingAdmissionPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: ImagePolicyName},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			ParamKind:        &admissionregistrationv1.ParamKind{APIVersion: "v1", Kind: "ConfigMap"},
			FailurePolicy:    new(admissionregistrationv1.Fail),
			MatchConstraints: podRules.DeepCopy(),
			MatchConditions:  []admissionregistrationv1.MatchCondition{optedIn},
			Validations: []admissionregistrationv1.Validation{{
				Expression: fmt.Sprintf("object.spec.?initContainers.orValue([]).all(c, !(c.name in %[1]s) || c.image == %[2]s) && "+
					"object.spec.containers.all(c, !(c.name in %[1]s) || c.image == %[2]s)", ours, image),
				Message: "chaperone: the chaperone-init and chaperone-sidecar containers must use the configured sidecar image",
				Reason:  new(metav1.StatusReasonForbidden),
			}},
		},
	}
}

// AdmissionPolicyBinding binds AdmissionPolicy with Deny to every namespace.
func AdmissionPolicyBinding() *admissionregistrationv1.ValidatingAdmissionPolicyBinding {
	return &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicyBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: PolicyName},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        PolicyName,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
		},
	}
}

// ImagePolicyBinding binds ImagePolicy with Deny to every namespace, with
// the image from the ConfigMap namespace/name.
func ImagePolicyBinding(namespace, name string) *admissionregistrationv1.ValidatingAdmissionPolicyBinding {
	return &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicyBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: ImagePolicyName},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName: ImagePolicyName,
			ParamRef: &admissionregistrationv1.ParamRef{
				Name: name, Namespace: namespace,
				ParameterNotFoundAction: new(admissionregistrationv1.AllowAction),
			},
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
		},
	}
}

// PolicyParams returns the parameter ConfigMap of ImagePolicy for the
// sidecar configuration cfg.
func PolicyParams(namespace, name string, cfg Config) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Data:       map[string]string{ParamSidecarImage: cfg.SidecarImage},
	}
}
