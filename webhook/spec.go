package webhook

import (
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/chaperone-dev/chaperone/sidecar/certs"
)

// initContainer runs `chaperone-sidecar init`, which installs the redirect
// rules; it alone runs as root, with NET_ADMIN and NET_RAW.
func initContainer(cfg Config, ports, cidrs []string) corev1.Container {
	args := []string{
		"init",
		"--proxy-port=" + strconv.Itoa(int(cfg.ProxyPort)),
		"--admin-port=" + strconv.Itoa(int(cfg.AdminPort)),
		"--proxy-uid=" + strconv.FormatUint(uint64(cfg.ProxyUID), 10),
		"--proxy-gid=" + strconv.FormatUint(uint64(cfg.ProxyGID), 10),
	}
	if len(ports) > 0 {
		args = append(args, "--exclude-ports="+strings.Join(ports, ","))
	}
	if len(cidrs) > 0 {
		args = append(args, "--exclude-cidrs="+strings.Join(cidrs, ","))
	}
	return corev1.Container{
		Name:            InitContainerName,
		Image:           cfg.SidecarImage,
		ImagePullPolicy: cfg.ImagePullPolicy,
		Command:         []string{"chaperone-sidecar"},
		Args:            args,
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                new(int64(0)),
			RunAsNonRoot:             new(false),
			ReadOnlyRootFilesystem:   new(true),
			AllowPrivilegeEscalation: new(false),
			Capabilities: &corev1.Capabilities{
				Add:  []corev1.Capability{"NET_ADMIN", "NET_RAW"},
				Drop: []corev1.Capability{"ALL"},
			},
		},
	}
}

// sidecarContainer is the recording proxy without its mode-specific parts.
func sidecarContainer(cfg Config) corev1.Container {
	args := []string{
		"proxy",
		"--listen=:" + strconv.Itoa(int(cfg.ProxyPort)),
		"--admin-addr=:" + strconv.Itoa(int(cfg.AdminPort)),
		"--spool-dir=" + SpoolDir,
		"--trust-dir=" + certs.DefaultTrustDir,
		"--extra-ca=" + TokenDir + "/ca.crt",
	}
	args = append(args, cfg.ExtraArgs...)
	return corev1.Container{
		Name:            SidecarContainerName,
		Image:           cfg.SidecarImage,
		ImagePullPolicy: cfg.ImagePullPolicy,
		Command:         []string{"chaperone-sidecar"},
		Args:            args,
		Resources:       *cfg.Resources.DeepCopy(),
		Ports: []corev1.ContainerPort{{
			Name: AdminPortName, ContainerPort: int32(cfg.AdminPort), Protocol: corev1.ProtocolTCP,
		}},
		Env: []corev1.EnvVar{
			fieldEnv("POD_UID", "metadata.uid"),
			fieldEnv("POD_NAME", "metadata.name"),
			fieldEnv("POD_NAMESPACE", "metadata.namespace"),
			fieldEnv("NODE_NAME", "spec.nodeName"),
			fieldEnv("SERVICE_ACCOUNT", "spec.serviceAccountName"),
			fieldEnv("CHAPERONE_USER", "metadata.annotations['"+AnnotationRequestedBy+"']"),
			fieldEnv("CHAPERONE_GROUPS", "metadata.annotations['"+AnnotationRequestedByGroups+"']"),
			{Name: "CHAPERONE_NATS_URL", Value: cfg.NATSURL},
			{Name: "CHAPERONE_TOKEN_FILE", Value: TokenDir + "/token"},
			{Name: "CHAPERONE_NATS_TOKEN_FILE", Value: TokenDir + "/" + NATSTokenPath},
			{Name: "CHAPERONE_PLACEHOLDER_TOKEN", Value: cfg.PlaceholderToken},
		},
		VolumeMounts: []corev1.VolumeMount{
			{Name: SpoolVolumeName, MountPath: SpoolDir},
			{Name: TrustVolumeName, MountPath: certs.DefaultTrustDir},
			{Name: TokenVolumeName, MountPath: TokenDir, ReadOnly: true},
		},
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                new(int64(cfg.ProxyUID)),
			RunAsGroup:               new(int64(cfg.ProxyGID)),
			RunAsNonRoot:             new(true),
			ReadOnlyRootFilesystem:   new(true),
			AllowPrivilegeEscalation: new(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
	}
}

func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{
		FieldRef: &corev1.ObjectFieldSelector{FieldPath: path},
	}}
}

// tokenVolume holds, for the sidecar only, the pod's two service-account
// tokens — the real one for the API server (its default audience), which
// the sidecar swaps for the agents' placeholder, and one for the server's
// audience, which it presents to NATS — with the cluster CA and the
// namespace. Two tokens, so that neither is good where the other goes.
func tokenVolume(cfg Config) corev1.Volume {
	return corev1.Volume{Name: TokenVolumeName, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		DefaultMode: new(int32(0o440)),
		Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				ExpirationSeconds: new(cfg.TokenExpiration), Path: "token",
			}},
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience: cfg.TokenAudience, ExpirationSeconds: new(cfg.TokenExpiration), Path: NATSTokenPath,
			}},
			rootCA(), namespaceFile(),
		},
	}}}
}

// agentTokenVolume looks like the standard service-account volume but its
// token is the placeholder the sidecar swaps for the real one.
func agentTokenVolume() corev1.Volume {
	return corev1.Volume{Name: AgentTokenVolumeName, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		DefaultMode: new(int32(0o444)),
		Sources: []corev1.VolumeProjection{
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{
				Path:     "token",
				FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.annotations['" + AnnotationPlaceholderToken + "']"},
			}}}},
			rootCA(), namespaceFile(),
		},
	}}}
}

func rootCA() corev1.VolumeProjection {
	return corev1.VolumeProjection{ConfigMap: &corev1.ConfigMapProjection{
		LocalObjectReference: corev1.LocalObjectReference{Name: RootCAConfigMap},
		Items:                []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}},
	}}
}

func namespaceFile() corev1.VolumeProjection {
	return corev1.VolumeProjection{DownwardAPI: &corev1.DownwardAPIProjection{
		Items: []corev1.DownwardAPIVolumeFile{{
			Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"},
		}},
	}}
}
