package webhook

import (
	"errors"
	"fmt"
	"os"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"
)

// Version is the release of the images the defaults name; the chart's
// appVersion is the same (a test checks).
const Version = "0.1.0"

// ImageValues names a container image as the chart's values do.
type ImageValues struct {
	Repository string            `json:"repository"`
	Tag        string            `json:"tag"`
	PullPolicy corev1.PullPolicy `json:"pullPolicy"`
}

// Ref is repository:tag.
func (i ImageValues) Ref() string { return i.Repository + ":" + i.Tag }

// SidecarValues is the sidecar's container spec as the chart configures
// it: the `sidecar:` block of values.yaml, rendered by the chart into the
// file chaperone-webhook reads with --sidecar-config. DefaultSidecarValues
// is equal to values.yaml (a test checks), so the chart and the webhook's
// built-in defaults cannot drift apart.
type SidecarValues struct {
	Image ImageValues `json:"image"`
	// Mode is "auto" (native when the API server is 1.29 or later),
	// "native" or "classic".
	Mode string `json:"mode"`
	// NATSURL is what sidecars connect to; empty in values.yaml means the
	// chart's chaperone-server (the chart fills it in).
	NATSURL                string                      `json:"natsURL"`
	Resources              corev1.ResourceRequirements `json:"resources"`
	TokenAudience          string                      `json:"tokenAudience"`
	TokenExpirationSeconds int64                       `json:"tokenExpirationSeconds"`
	PlaceholderToken       string                      `json:"placeholderToken"`
	ExtraArgs              []string                    `json:"extraArgs"`
}

// Sidecar modes as SidecarValues.Mode spells them.
const (
	ValuesModeAuto    = "auto"
	ValuesModeNative  = "native"
	ValuesModeClassic = "classic"
)

// DefaultSidecarValues are the built-in sidecar settings of
// chaperone-webhook and the `sidecar:` block of the chart's values.yaml.
func DefaultSidecarValues() SidecarValues {
	return SidecarValues{
		Image: ImageValues{
			Repository: "ghcr.io/chaperone-dev/chaperone-sidecar",
			Tag:        Version,
			PullPolicy: corev1.PullIfNotPresent,
		},
		Mode: ValuesModeAuto,
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("50m"),
				corev1.ResourceMemory: resource.MustParse("64Mi"),
			},
			Limits: corev1.ResourceList{
				corev1.ResourceMemory: resource.MustParse("512Mi"),
			},
		},
		TokenAudience:          "chaperone",
		TokenExpirationSeconds: DefaultTokenExpiration,
		PlaceholderToken:       DefaultPlaceholderToken,
		ExtraArgs:              []string{},
	}
}

// ErrInvalidValues is wrapped by the errors of SidecarValues.Validate and
// LoadSidecarValues.
var ErrInvalidValues = errors.New("invalid sidecar values")

// Validate checks the values that Config.Validate does not see.
func (v SidecarValues) Validate() error {
	switch v.Mode {
	case ValuesModeAuto, ValuesModeNative, ValuesModeClassic:
	default:
		return fmt.Errorf("%w: mode %q is not auto, native or classic", ErrInvalidValues, v.Mode)
	}
	if v.Image.Repository == "" || v.Image.Tag == "" {
		return fmt.Errorf("%w: image repository and tag are required", ErrInvalidValues)
	}
	switch v.Image.PullPolicy {
	case "", corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		return fmt.Errorf("%w: image pull policy %q", ErrInvalidValues, v.Image.PullPolicy)
	}
	return nil
}

// Apply sets cfg's sidecar settings from v. A "auto" mode leaves cfg.Mode
// empty for the caller to decide; an empty NATSURL leaves cfg's.
func (v SidecarValues) Apply(cfg *Config) {
	cfg.SidecarImage = v.Image.Ref()
	cfg.ImagePullPolicy = v.Image.PullPolicy
	switch v.Mode {
	case ValuesModeNative:
		cfg.Mode = ModeNative
	case ValuesModeClassic:
		cfg.Mode = ModeClassic
	default:
		cfg.Mode = ""
	}
	if v.NATSURL != "" {
		cfg.NATSURL = v.NATSURL
	}
	cfg.Resources = *v.Resources.DeepCopy()
	cfg.TokenAudience = v.TokenAudience
	cfg.TokenExpiration = v.TokenExpirationSeconds
	cfg.PlaceholderToken = v.PlaceholderToken
	cfg.ExtraArgs = append([]string(nil), v.ExtraArgs...)
}

// LoadSidecarValues reads a YAML (or JSON) file of SidecarValues; fields
// the file leaves out keep DefaultSidecarValues, unknown fields are errors.
func LoadSidecarValues(path string) (SidecarValues, error) {
	b, err := os.ReadFile(path) //nolint:gosec // the operator names the file
	if err != nil {
		return SidecarValues{}, fmt.Errorf("sidecar values: %w", err)
	}
	v := DefaultSidecarValues()
	// A resources block in the file replaces the default one whole, as in
	// Helm, instead of being merged key by key.
	var keys map[string]any
	if err := yaml.Unmarshal(b, &keys); err != nil {
		return SidecarValues{}, fmt.Errorf("%w: %s: %w", ErrInvalidValues, path, err)
	}
	if _, ok := keys["resources"]; ok {
		v.Resources = corev1.ResourceRequirements{}
	}
	if err := yaml.UnmarshalStrict(b, &v); err != nil {
		return SidecarValues{}, fmt.Errorf("%w: %s: %w", ErrInvalidValues, path, err)
	}
	if err := v.Validate(); err != nil {
		return SidecarValues{}, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}
