package podrunner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ErrUnsupported is wrapped by errors about parts of a Pod the runner cannot
// reproduce.
var ErrUnsupported = errors.New("podrunner: unsupported")

// volumes creates one directory per pod volume under dir and fills the
// projected, downward-API, ConfigMap and Secret ones. owners maps a volume to
// the UID and GID that should own its files (the non-root container that
// mounts it), as the kubelet does for a pod's token volumes.
func (r *run) volumes(ctx context.Context) error {
	for _, v := range r.pod.Spec.Volumes {
		dir := filepath.Join(r.dir, "volumes", v.Name)
		r.volumeDirs[v.Name] = dir
		src := v.VolumeSource
		var err error
		switch {
		case src.EmptyDir != nil:
			err = mkdir(dir, 0o777)
		case src.Projected != nil:
			err = r.projected(ctx, dir, src.Projected.Sources, src.Projected.DefaultMode)
		case src.DownwardAPI != nil:
			err = r.projected(ctx, dir, []corev1.VolumeProjection{{DownwardAPI: &corev1.DownwardAPIProjection{Items: src.DownwardAPI.Items}}}, src.DownwardAPI.DefaultMode)
		case src.ConfigMap != nil:
			err = r.projected(ctx, dir, []corev1.VolumeProjection{{ConfigMap: &corev1.ConfigMapProjection{
				LocalObjectReference: src.ConfigMap.LocalObjectReference, Items: src.ConfigMap.Items, Optional: src.ConfigMap.Optional,
			}}}, src.ConfigMap.DefaultMode)
		case src.Secret != nil:
			err = r.projected(ctx, dir, []corev1.VolumeProjection{{Secret: &corev1.SecretProjection{
				LocalObjectReference: corev1.LocalObjectReference{Name: src.Secret.SecretName}, Items: src.Secret.Items, Optional: src.Secret.Optional,
			}}}, src.Secret.DefaultMode)
		default:
			err = fmt.Errorf("%w: volume %s: only emptyDir, projected, downwardAPI, configMap and secret volumes", ErrUnsupported, v.Name)
		}
		if err != nil {
			return fmt.Errorf("volume %s: %w", v.Name, err)
		}
		if owner, ok := r.volumeOwner(v.Name); ok && src.EmptyDir == nil {
			if err := chownTree(dir, owner); err != nil {
				return fmt.Errorf("volume %s: %w", v.Name, err)
			}
		}
	}
	return nil
}

// projected writes the sources' files into dir.
func (r *run) projected(ctx context.Context, dir string, sources []corev1.VolumeProjection, defaultMode *int32) error {
	if err := mkdir(dir, 0o755); err != nil {
		return err
	}
	mode := os.FileMode(0o644)
	if defaultMode != nil {
		mode = os.FileMode(*defaultMode)
	}
	write := func(path string, data []byte, m *int32) error {
		fm := mode
		if m != nil {
			fm = os.FileMode(*m)
		}
		p := filepath.Join(dir, filepath.Clean("/"+path))
		if err := mkdir(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, fm); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		return os.Chmod(p, fm)
	}
	for _, s := range sources {
		switch {
		case s.ServiceAccountToken != nil:
			tok, err := r.token(ctx, s.ServiceAccountToken)
			if err != nil {
				return err
			}
			if err := write(s.ServiceAccountToken.Path, []byte(tok), nil); err != nil {
				return err
			}
		case s.DownwardAPI != nil:
			for _, it := range s.DownwardAPI.Items {
				if it.FieldRef == nil {
					return fmt.Errorf("%w: downward API file %s: only fieldRef", ErrUnsupported, it.Path)
				}
				val, err := r.field(it.FieldRef.FieldPath)
				if err != nil {
					return err
				}
				if err := write(it.Path, []byte(val), it.Mode); err != nil {
					return err
				}
			}
		case s.ConfigMap != nil:
			cm, err := r.opts.Client.CoreV1().ConfigMaps(r.pod.Namespace).Get(ctx, s.ConfigMap.Name, metav1.GetOptions{})
			if err != nil {
				if s.ConfigMap.Optional != nil && *s.ConfigMap.Optional {
					continue
				}
				return fmt.Errorf("configmap %s: %w", s.ConfigMap.Name, err)
			}
			data := map[string][]byte{}
			for k, v := range cm.Data {
				data[k] = []byte(v)
			}
			for k, v := range cm.BinaryData {
				data[k] = v
			}
			if err := writeKeys(data, s.ConfigMap.Items, write); err != nil {
				return fmt.Errorf("configmap %s: %w", s.ConfigMap.Name, err)
			}
		case s.Secret != nil:
			sec, err := r.opts.Client.CoreV1().Secrets(r.pod.Namespace).Get(ctx, s.Secret.Name, metav1.GetOptions{})
			if err != nil {
				if s.Secret.Optional != nil && *s.Secret.Optional {
					continue
				}
				return fmt.Errorf("secret %s: %w", s.Secret.Name, err)
			}
			if err := writeKeys(sec.Data, s.Secret.Items, write); err != nil {
				return fmt.Errorf("secret %s: %w", s.Secret.Name, err)
			}
		default:
			return fmt.Errorf("%w: projected source %+v", ErrUnsupported, s)
		}
	}
	return nil
}

func writeKeys(data map[string][]byte, items []corev1.KeyToPath, write func(string, []byte, *int32) error) error {
	if len(items) == 0 {
		for k, v := range data {
			if err := write(k, v, nil); err != nil {
				return err
			}
		}
		return nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			return fmt.Errorf("no key %q", it.Key)
		}
		if err := write(it.Path, v, it.Mode); err != nil {
			return err
		}
	}
	return nil
}

// token asks the API server for the pod's service-account token, bound to
// the pod, as the kubelet does for a projected token.
func (r *run) token(ctx context.Context, p *corev1.ServiceAccountTokenProjection) (string, error) {
	sa := r.pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: p.ExpirationSeconds,
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: r.pod.Name, UID: r.pod.UID},
	}}
	if p.Audience != "" {
		req.Spec.Audiences = []string{p.Audience}
	}
	got, err := r.opts.Client.CoreV1().ServiceAccounts(r.pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token of service account %s/%s: %w", r.pod.Namespace, sa, err)
	}
	return got.Status.Token, nil
}

// field returns a downward-API field of the pod.
func (r *run) field(path string) (string, error) {
	p := r.pod
	switch path {
	case "metadata.name":
		return p.Name, nil
	case "metadata.namespace":
		return p.Namespace, nil
	case "metadata.uid":
		return string(p.UID), nil
	case "spec.nodeName":
		return p.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return p.Spec.ServiceAccountName, nil
	case "status.podIP":
		return r.opts.Sandbox.NSIP().String(), nil
	case "status.hostIP":
		return r.opts.Sandbox.HostIP().String(), nil
	}
	for prefix, m := range map[string]map[string]string{"metadata.annotations": p.Annotations, "metadata.labels": p.Labels} {
		if rest, ok := strings.CutPrefix(path, prefix+"['"); ok {
			if key, ok := strings.CutSuffix(rest, "']"); ok {
				return m[key], nil
			}
		}
	}
	return "", fmt.Errorf("%w: downward API field %q", ErrUnsupported, path)
}

// volumeOwner is the identity of the first non-root container mounting
// volume, if any.
func (r *run) volumeOwner(volume string) (identity, bool) {
	for _, c := range r.allContainers() {
		id := r.identity(c)
		if id.uid == nil || *id.uid == 0 {
			continue
		}
		for _, m := range c.VolumeMounts {
			if m.Name == volume {
				return id, true
			}
		}
	}
	return identity{}, false
}

func chownTree(dir string, id identity) error {
	gid := *id.uid
	if id.gid != nil {
		gid = *id.gid
	}
	return filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(*id.uid), int(gid)) //nolint:gosec // Lchown never follows a link, and the tree is the runner's own fresh volume
	})
}

func mkdir(dir string, mode os.FileMode) error {
	if err := os.MkdirAll(dir, mode); err != nil {
		return fmt.Errorf("mkdir %s: %w", dir, err)
	}
	if err := os.Chmod(dir, mode); err != nil { // past the umask
		return fmt.Errorf("chmod %s: %w", dir, err)
	}
	return nil
}
