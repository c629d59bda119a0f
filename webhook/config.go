package webhook

import (
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Annotations and labels the webhook reads or writes; the names are fixed by
// the design.
const (
	// AnnotationInject on a pod (template) opts in ("enabled") or out ("disabled").
	AnnotationInject = "chaperone.dev/inject"
	// LabelInject on a namespace opts in all of its pods.
	LabelInject = "chaperone.dev/inject"
	// AnnotationRequestedBy holds the username of who created or last
	// changed the workload, from the admission request.
	AnnotationRequestedBy = "chaperone.dev/requested-by"
	// AnnotationRequestedByGroups holds that user's groups, comma-separated.
	AnnotationRequestedByGroups = "chaperone.dev/requested-by-groups"
	// AnnotationExcludePorts lists TCP ports the pod reaches directly.
	AnnotationExcludePorts = "traffic.chaperone.dev/exclude-outbound-ports"
	// AnnotationExcludeCIDRs lists destination CIDRs the pod reaches directly.
	AnnotationExcludeCIDRs = "traffic.chaperone.dev/exclude-outbound-cidrs"

	// ValueEnabled and ValueDisabled are the values of the opt-in switches.
	ValueEnabled  = "enabled"
	ValueDisabled = "disabled"
)

// Names of what Inject adds to a pod.
const (
	InitContainerName    = "chaperone-init"
	SidecarContainerName = "chaperone-sidecar"
	SpoolVolumeName      = "chaperone-spool"
	TrustVolumeName      = "chaperone-trust"
	TokenVolumeName      = "chaperone-token"
	AgentTokenVolumeName = "chaperone-agent-token"
	AdminPortName        = "chaperone-admin"

	// SpoolDir is where the sidecar spools events not yet acknowledged.
	SpoolDir = "/var/run/chaperone/spool"
	// TokenDir is where the sidecar alone finds the real service-account
	// token, the cluster CA and the namespace.
	TokenDir = "/var/run/secrets/chaperone/serviceaccount"
	// NATSTokenPath is the sidecar's NATS token in TokenDir.
	NATSTokenPath = "nats-token"
	// ServiceAccountDir is the standard token path; agents get the
	// placeholder there.
	ServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"
	// RootCAConfigMap is published by Kubernetes in every namespace.
	RootCAConfigMap = "kube-root-ca.crt"
	// AnnotationPlaceholderToken holds the placeholder token on an injected
	// pod; the agents' token file is projected from it by the downward API,
	// which, unlike a ConfigMap, needs nothing in the pod's namespace.
	AnnotationPlaceholderToken = "chaperone.dev/placeholder-token"
)

// SidecarMode selects how the sidecar container is added.
type SidecarMode string

// Sidecar modes.
const (
	// ModeNative adds the sidecar as an init container with restartPolicy
	// Always (Kubernetes ≥ 1.29): it starts before and stops after the agents.
	ModeNative SidecarMode = "native"
	// ModeClassic adds the sidecar as the first ordinary container with a
	// postStart hook that blocks the next container until it is ready.
	ModeClassic SidecarMode = "classic"
)

// Defaults for Config.
const (
	DefaultPlaceholderToken = "chaperone-placeholder-token"
	DefaultTokenExpiration  = int64(3600)
)

// Config is what Inject needs besides the pod.
type Config struct {
	// SidecarImage runs both `chaperone-sidecar init` and `proxy`.
	SidecarImage string
	// ImagePullPolicy of both containers; empty leaves Kubernetes' default.
	ImagePullPolicy corev1.PullPolicy
	// Resources of the sidecar container.
	Resources corev1.ResourceRequirements
	// Mode is ModeNative or ModeClassic.
	Mode SidecarMode
	// NATSURL is given to the sidecar as CHAPERONE_NATS_URL.
	NATSURL string
	// TokenAudience is the audience of the sidecar's NATS token (the
	// server's --workload-audience); its API-server token has the API
	// server's default audience.
	TokenAudience string
	// TokenExpiration in seconds of that token (default one hour).
	TokenExpiration int64
	// PlaceholderToken is what agents find as their service-account token;
	// the sidecar (CHAPERONE_PLACEHOLDER_TOKEN) swaps it for the real one.
	PlaceholderToken string
	// ProxyPort, AdminPort, ProxyUID and ProxyGID of the sidecar; zero means
	// the defaults of sidecar/redirect.
	ProxyPort, AdminPort uint16
	ProxyUID, ProxyGID   uint32
	// ExtraArgs are appended to the sidecar's proxy arguments.
	ExtraArgs []string
}

// ErrInvalidConfig is wrapped by Config.Validate errors.
var ErrInvalidConfig = errors.New("invalid webhook config")

// Validate fills defaults and checks the configuration.
func (c *Config) Validate() error {
	c.defaults()
	var errs []string
	if c.SidecarImage == "" {
		errs = append(errs, "sidecar image is required")
	}
	if c.Mode != ModeNative && c.Mode != ModeClassic {
		errs = append(errs, fmt.Sprintf("sidecar mode %q is not %q or %q", c.Mode, ModeNative, ModeClassic))
	}
	if c.NATSURL == "" {
		errs = append(errs, "NATS URL is required")
	}
	if c.PlaceholderToken == "" || strings.ContainsAny(c.PlaceholderToken, " \t\r\n") {
		errs = append(errs, "placeholder token must be non-empty without spaces")
	}
	if c.TokenExpiration < 600 {
		errs = append(errs, "token expiration must be at least 600 seconds")
	}
	if c.ProxyUID == 0 || c.ProxyGID == 0 {
		errs = append(errs, "proxy UID and GID must not be 0")
	}
	if c.ProxyPort == c.AdminPort {
		errs = append(errs, "proxy and admin port must differ")
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, strings.Join(errs, "; "))
	}
	return nil
}
