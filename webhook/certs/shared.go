package certs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Shared keeps the files of a Manager's directory where every replica of
// the webhook finds them, so that all replicas serve certificates of one CA
// and agree on the caBundle.
type Shared interface {
	// Pull copies the shared files into dir, when there are any, and
	// reports whether the store held all of them.
	Pull(ctx context.Context, dir string) (bool, error)
	// Push stores dir's files; it fails with an error for which
	// IsConflict is true when another replica stored its own since Pull.
	Push(ctx context.Context, dir string) error
}

// ErrConflict is wrapped by Push errors caused by a concurrent change.
var ErrConflict = errors.New("shared certificates changed concurrently")

// sharedFiles are the files kept in the shared store.
// Keys come before their certificates, so a reader of the directory that
// sees a new certificate finds its key.
var sharedFiles = []string{CAKeyFile, CAFile, BundleFile, KeyFile, CertFile}

// SecretStore is a Shared kept in a Kubernetes Secret (type Opaque, one key
// per file). The Secret may exist empty beforehand (the chart creates it, so
// the webhook needs only get and update on that one name); it is created
// when missing.
type SecretStore struct {
	client    kubernetes.Interface
	namespace string
	name      string
	// exists and version tell whether the last Pull found the Secret, and
	// its resourceVersion.
	exists  bool
	version string
}

var _ Shared = (*SecretStore)(nil)

// NewSecretStore returns a store in the Secret namespace/name.
func NewSecretStore(client kubernetes.Interface, namespace, name string) *SecretStore {
	return &SecretStore{client: client, namespace: namespace, name: name}
}

// Pull implements Shared.
func (s *SecretStore) Pull(ctx context.Context, dir string) (bool, error) {
	sec, err := s.client.CoreV1().Secrets(s.namespace).Get(ctx, s.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		s.exists, s.version = false, ""
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("get secret %s/%s: %w", s.namespace, s.name, err)
	}
	s.exists, s.version = true, sec.ResourceVersion
	complete := true
	for _, f := range sharedFiles {
		data, ok := sec.Data[f]
		if !ok || len(data) == 0 {
			complete = false
			continue
		}
		if bytes.Equal(readFile(filepath.Join(dir, f)), data) {
			continue
		}
		mode := os.FileMode(0o644)
		if f == CAKeyFile || f == KeyFile {
			mode = 0o600
		}
		if err := writeFile(filepath.Join(dir, f), data, mode); err != nil {
			return false, err
		}
	}
	return complete, nil
}

// Push implements Shared.
func (s *SecretStore) Push(ctx context.Context, dir string) error {
	data := map[string][]byte{}
	for _, f := range sharedFiles {
		if b := readFile(filepath.Join(dir, f)); len(b) > 0 {
			data[f] = b
		}
	}
	api := s.client.CoreV1().Secrets(s.namespace)
	var err error
	if !s.exists {
		var sec *corev1.Secret
		sec, err = api.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: s.namespace},
			Type:       corev1.SecretTypeOpaque,
			Data:       data,
		}, metav1.CreateOptions{})
		if err == nil {
			s.exists, s.version = true, sec.ResourceVersion
		}
	} else {
		var sec *corev1.Secret
		sec, err = api.Get(ctx, s.name, metav1.GetOptions{})
		if err == nil {
			if sec.ResourceVersion != s.version {
				return fmt.Errorf("%w: secret %s/%s", ErrConflict, s.namespace, s.name)
			}
			sec.Data = data
			sec, err = api.Update(ctx, sec, metav1.UpdateOptions{})
			if err == nil {
				s.version = sec.ResourceVersion
			}
		}
	}
	if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) || apierrors.IsNotFound(err) {
		return fmt.Errorf("%w: secret %s/%s: %w", ErrConflict, s.namespace, s.name, err)
	}
	if err != nil {
		return fmt.Errorf("store certificates in secret %s/%s: %w", s.namespace, s.name, err)
	}
	return nil
}

// IsConflict reports whether err is a Push conflict.
func IsConflict(err error) bool { return errors.Is(err, ErrConflict) }
