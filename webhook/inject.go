package webhook

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/chaperone-dev/chaperone/sidecar/certs"
	"github.com/chaperone-dev/chaperone/sidecar/redirect"
)

// ErrRefused is wrapped by the errors of pods that opted in but cannot be
// injected safely; the handler denies them with the message.
var ErrRefused = errors.New("chaperone refuses the pod")

// Input is what the admission request adds to the pod.
type Input struct {
	// NamespaceLabels are the labels of the pod's namespace.
	NamespaceLabels map[string]string
	// User is the admission request's userInfo.
	User authenticationv1.UserInfo
}

func (c *Config) defaults() {
	if c.Mode == "" {
		c.Mode = ModeNative
	}
	if c.TokenExpiration == 0 {
		c.TokenExpiration = DefaultTokenExpiration
	}
	if c.PlaceholderToken == "" {
		c.PlaceholderToken = DefaultPlaceholderToken
	}
	if c.ProxyPort == 0 {
		c.ProxyPort = redirect.DefaultProxyPort
	}
	if c.AdminPort == 0 {
		c.AdminPort = redirect.DefaultAdminPort
	}
	if c.ProxyUID == 0 {
		c.ProxyUID = redirect.DefaultProxyUID
	}
	if c.ProxyGID == 0 {
		c.ProxyGID = redirect.DefaultProxyGID
	}
}

// Selected reports whether a pod (template) with these annotations in a
// namespace with these labels opted in: the pod's annotation wins, then the
// namespace label.
func Selected(annotations, namespaceLabels map[string]string) bool {
	switch annotations[AnnotationInject] {
	case ValueEnabled:
		return true
	case ValueDisabled:
		return false
	}
	return namespaceLabels[LabelInject] == ValueEnabled
}

// Injected reports whether the pod already carries the sidecar.
func Injected(spec *corev1.PodSpec) bool {
	has := func(cs []corev1.Container) bool {
		return slices.ContainsFunc(cs, func(c corev1.Container) bool {
			return c.Name == SidecarContainerName || c.Name == InitContainerName
		})
	}
	return has(spec.InitContainers) || has(spec.Containers)
}

// Inject returns a mutated copy of pod: unchanged when the pod did not opt
// in; with the requested-by annotations (re)stamped when it did; and with the
// init container, sidecar, volumes and agent settings added unless they are
// already there. Agent containers lose SETUID, SETGID and privilege
// escalation, so a root agent cannot become the sidecar's UID. Pods that
// opted in but would escape or break the recording (host network, an agent
// running as the sidecar's UID or GID, privileged, with NET_ADMIN/NET_RAW or
// SETUID/SETGID, or allowing privilege escalation) yield an error wrapping
// ErrRefused.
func Inject(pod *corev1.Pod, cfg Config, in Input) (*corev1.Pod, error) {
	out := pod.DeepCopy()
	if err := mutate(out, cfg, in); err != nil {
		return nil, err
	}
	return out, nil
}

// mutate is Inject on pod itself, for the handler, which owns the pod it
// decoded: on error pod may be partly changed.
func mutate(pod *corev1.Pod, cfg Config, in Input) error {
	cfg.defaults()
	if !Selected(pod.Annotations, in.NamespaceLabels) {
		return nil
	}
	if err := check(&pod.Spec, cfg); err != nil {
		return err
	}
	stampRequester(&pod.ObjectMeta, in.User)
	if Injected(&pod.Spec) {
		return nil
	}
	return inject(pod, cfg)
}

// check refuses pods that could bypass the redirect or impersonate the sidecar.
func check(spec *corev1.PodSpec, cfg Config) error {
	if spec.HostNetwork {
		return fmt.Errorf("%w: hostNetwork pods share the node's network namespace and cannot be recorded; remove hostNetwork or opt out with %s: %s",
			ErrRefused, AnnotationInject, ValueDisabled)
	}
	var podUser, podGroup *int64
	if sc := spec.SecurityContext; sc != nil {
		podUser, podGroup = sc.RunAsUser, sc.RunAsGroup
	}
	for _, c := range agents(spec) {
		user, group := podUser, podGroup
		sc := c.SecurityContext
		if sc != nil && sc.RunAsUser != nil {
			user = sc.RunAsUser
		}
		if sc != nil && sc.RunAsGroup != nil {
			group = sc.RunAsGroup
		}
		if user != nil && *user == int64(cfg.ProxyUID) {
			return fmt.Errorf("%w: container %q runs as UID %d, reserved for the sidecar, whose traffic is not redirected", ErrRefused, c.Name, *user)
		}
		if group != nil && *group == int64(cfg.ProxyGID) {
			return fmt.Errorf("%w: container %q runs as GID %d, reserved for the sidecar, whose traffic is not redirected", ErrRefused, c.Name, *group)
		}
		if sc == nil {
			continue
		}
		if sc.Privileged != nil && *sc.Privileged {
			return fmt.Errorf("%w: container %q is privileged and could remove the redirect rules", ErrRefused, c.Name)
		}
		if sc.Capabilities != nil {
			for _, cp := range sc.Capabilities.Add {
				switch strings.TrimPrefix(strings.ToUpper(string(cp)), "CAP_") {
				case "NET_ADMIN", "NET_RAW", "ALL":
					return fmt.Errorf("%w: container %q requests capability %s, which could bypass the redirect rules", ErrRefused, c.Name, cp)
				case "SETUID", "SETGID":
					return fmt.Errorf("%w: container %q requests capability %s, which could switch to the sidecar's UID or GID, whose traffic is not redirected", ErrRefused, c.Name, cp)
				}
			}
		}
		if sc.AllowPrivilegeEscalation != nil && *sc.AllowPrivilegeEscalation {
			return fmt.Errorf("%w: container %q allows privilege escalation, by which it could switch to the sidecar's UID, whose traffic is not redirected", ErrRefused, c.Name)
		}
	}
	return nil
}

// agents returns pointers to the pod's own containers: all ordinary ones and
// the init containers that are not Chaperone's.
func agents(spec *corev1.PodSpec) []*corev1.Container {
	var out []*corev1.Container
	for i := range spec.InitContainers {
		if n := spec.InitContainers[i].Name; n != InitContainerName && n != SidecarContainerName {
			out = append(out, &spec.InitContainers[i])
		}
	}
	for i := range spec.Containers {
		if spec.Containers[i].Name != SidecarContainerName {
			out = append(out, &spec.Containers[i])
		}
	}
	return out
}

// stampRequester overwrites the requested-by annotations with the admission
// request's user, except when a built-in Kubernetes controller creates or
// changes an object that already carries them: a ReplicaSet's pod, a
// Deployment's ReplicaSet or a CronJob's Job come from a template this
// webhook stamped when a person changed the owner, and the deployment
// controller's own updates (revision annotations) must not re-stamp, and so
// roll out, the template.
func stampRequester(meta *metav1.ObjectMeta, user authenticationv1.UserInfo) {
	if builtInController(user) && meta.Annotations[AnnotationRequestedBy] != "" {
		return
	}
	if meta.Annotations == nil {
		meta.Annotations = map[string]string{}
	}
	meta.Annotations[AnnotationRequestedBy] = user.Username
	meta.Annotations[AnnotationRequestedByGroups] = strings.Join(user.Groups, ",")
}

// builtInController reports whether user is kube-controller-manager, under
// its own identity or one of its per-controller service accounts. Only
// cluster administrators can act as these.
func builtInController(user authenticationv1.UserInfo) bool {
	return user.Username == "system:kube-controller-manager" ||
		strings.HasPrefix(user.Username, "system:serviceaccount:kube-system:")
}

// inject adds Chaperone's containers and volumes to pod and points its
// agents at the trust bundle and the placeholder token.
func inject(pod *corev1.Pod, cfg Config) error {
	ports, cidrs, err := exclusions(pod.Annotations)
	if err != nil {
		return err
	}
	spec := &pod.Spec
	agentToken := spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken
	dropDefaultToken(spec)
	spec.AutomountServiceAccountToken = new(false)

	trustEnv := trustEnv()
	for _, c := range agents(spec) {
		confine(c)
		c.Env = setEnv(c.Env, trustEnv)
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: TrustVolumeName, MountPath: certs.DefaultTrustDir, ReadOnly: true})
		if agentToken {
			c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: AgentTokenVolumeName, MountPath: ServiceAccountDir, ReadOnly: true})
		}
	}

	spec.Volumes = append(spec.Volumes,
		corev1.Volume{Name: SpoolVolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		corev1.Volume{Name: TrustVolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		tokenVolume(cfg),
	)
	if agentToken {
		spec.Volumes = append(spec.Volumes, agentTokenVolume())
		pod.Annotations[AnnotationPlaceholderToken] = cfg.PlaceholderToken
	}

	initC := initContainer(cfg, ports, cidrs)
	side := sidecarContainer(cfg)
	if cfg.Mode == ModeNative {
		always := corev1.ContainerRestartPolicyAlways
		side.RestartPolicy = &always
		side.StartupProbe = &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: "/readyz", Port: intstr.FromString(AdminPortName),
			}},
			PeriodSeconds:    1,
			FailureThreshold: 60,
		}
		spec.InitContainers = append([]corev1.Container{initC, side}, spec.InitContainers...)
	} else {
		side.Lifecycle = &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{
			Command: WaitCommand(cfg),
		}}}
		spec.InitContainers = append([]corev1.Container{initC}, spec.InitContainers...)
		spec.Containers = append([]corev1.Container{side}, spec.Containers...)
	}
	return nil
}

// confinedCaps are dropped from every agent container: with them a root
// agent could switch to the sidecar's UID or GID, whose traffic the redirect
// rules exempt.
var confinedCaps = []corev1.Capability{"SETUID", "SETGID"}

// confine keeps an agent container from becoming the sidecar's UID or GID:
// it drops SETUID and SETGID and forbids privilege escalation (no setuid
// binaries, which root could otherwise make for that UID).
func confine(c *corev1.Container) {
	if c.SecurityContext == nil {
		c.SecurityContext = &corev1.SecurityContext{}
	}
	sc := c.SecurityContext
	sc.AllowPrivilegeEscalation = new(false)
	if sc.Capabilities == nil {
		sc.Capabilities = &corev1.Capabilities{}
	}
	if slices.ContainsFunc(sc.Capabilities.Drop, func(cp corev1.Capability) bool {
		return strings.TrimPrefix(strings.ToUpper(string(cp)), "CAP_") == "ALL"
	}) {
		return
	}
	for _, want := range confinedCaps {
		if !slices.ContainsFunc(sc.Capabilities.Drop, func(cp corev1.Capability) bool {
			return strings.TrimPrefix(strings.ToUpper(string(cp)), "CAP_") == string(want)
		}) {
			sc.Capabilities.Drop = append(sc.Capabilities.Drop, want)
		}
	}
}

// WaitCommand is the classic sidecar's postStart hook: it returns once the
// sidecar's /readyz answers, so the kubelet starts the next container
// (the agent) only then.
func WaitCommand(cfg Config) []string {
	cfg.defaults()
	return []string{"chaperone-sidecar", "wait", "--admin-addr=127.0.0.1:" + strconv.Itoa(int(cfg.AdminPort))}
}

// exclusions parses the traffic annotations.
func exclusions(ann map[string]string) (ports, cidrs []string, err error) {
	for f := range strings.SplitSeq(ann[AnnotationExcludePorts], ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		if n, err := strconv.ParseUint(f, 10, 16); err != nil || n == 0 {
			return nil, nil, fmt.Errorf("%w: annotation %s: %q is not a port", ErrRefused, AnnotationExcludePorts, f)
		}
		ports = append(ports, f)
	}
	for f := range strings.SplitSeq(ann[AnnotationExcludeCIDRs], ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		if _, err := netip.ParsePrefix(f); err != nil {
			if _, err := netip.ParseAddr(f); err != nil {
				return nil, nil, fmt.Errorf("%w: annotation %s: %q is not a CIDR or address", ErrRefused, AnnotationExcludeCIDRs, f)
			}
		}
		cidrs = append(cidrs, f)
	}
	return ports, cidrs, nil
}

// dropDefaultToken removes what the ServiceAccount admission plugin added
// (it runs before webhooks): the kube-api-access-* volume and its mounts at
// the standard token path, so that only the placeholder is mounted there.
func dropDefaultToken(spec *corev1.PodSpec) {
	dropped := map[string]bool{}
	for _, c := range agents(spec) {
		c.VolumeMounts = slices.DeleteFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
			if filepath.Clean(m.MountPath) == ServiceAccountDir {
				dropped[m.Name] = true
				return true
			}
			return false
		})
	}
	spec.Volumes = slices.DeleteFunc(spec.Volumes, func(v corev1.Volume) bool {
		return dropped[v.Name] && strings.HasPrefix(v.Name, "kube-api-access-") && !mounted(spec, v.Name)
	})
}

func mounted(spec *corev1.PodSpec, volume string) bool {
	for _, c := range agents(spec) {
		for _, m := range c.VolumeMounts {
			if m.Name == volume {
				return true
			}
		}
	}
	return false
}

// trustEnv is the CA environment of agent containers.
func trustEnv() []corev1.EnvVar {
	var out []corev1.EnvVar
	for _, kv := range certs.Env(certs.DefaultTrustDir) {
		k, v, _ := strings.Cut(kv, "=")
		out = append(out, corev1.EnvVar{Name: k, Value: v})
	}
	return out
}

// setEnv overrides or appends vars in env.
func setEnv(env, vars []corev1.EnvVar) []corev1.EnvVar {
	for _, v := range vars {
		i := slices.IndexFunc(env, func(e corev1.EnvVar) bool { return e.Name == v.Name })
		if i >= 0 {
			env[i] = v
		} else {
			env = append(env, v)
		}
	}
	return env
}
