package policy

import (
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chaperone-dev/chaperone/pkg/policy/v1alpha1"
)

// BundleVersion is the version of the bundle format Marshal writes and
// Unmarshal accepts.
const BundleVersion = 1

// bundle is the wire form of a Set: its source, with a version and the
// hash the receiver checks.
type bundle struct {
	Version  int                      `json:"version"`
	Hash     string                   `json:"hash"`
	Policies []v1alpha1.SessionPolicy `json:"policies"`
}

// Marshal encodes the set's source for distribution (the server puts it in
// a NATS KV bucket; sidecars Unmarshal it). Only each policy's name, labels,
// generation, resource version and UID travel of its metadata, and no status.
func (s *Set) Marshal() ([]byte, error) {
	ps := s.Policies()
	for i := range ps {
		m := &ps[i].ObjectMeta
		ps[i].ObjectMeta = metav1.ObjectMeta{
			Name:            m.Name,
			Labels:          m.Labels,
			Generation:      m.Generation,
			ResourceVersion: m.ResourceVersion,
			UID:             m.UID,
		}
		// Status is the cluster's view of the policy, not part of it.
		ps[i].Status = v1alpha1.SessionPolicyStatus{}
	}
	b, err := json.Marshal(bundle{Version: BundleVersion, Hash: s.hash, Policies: ps})
	if err != nil {
		return nil, fmt.Errorf("marshal policy bundle: %w", err)
	}
	return b, nil
}

// Unmarshal decodes a bundle written by Marshal, checks its version and
// hash, and compiles it. Unknown fields are errors.
func Unmarshal(data []byte) (*Set, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%w: bundle larger than %d bytes", ErrSyntax, MaxFileSize)
	}
	var b bundle
	if err := decodeStrictJSON(data, &b); err != nil {
		return nil, fmt.Errorf("%w: bundle: %w", ErrSyntax, err)
	}
	if b.Version != BundleVersion {
		return nil, fmt.Errorf("%w: bundle version %d, want %d", ErrSyntax, b.Version, BundleVersion)
	}
	s, err := Compile(b.Policies)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	if s.hash != b.Hash {
		return nil, fmt.Errorf("%w: bundle hash %q does not match its policies (%q)", ErrSyntax, b.Hash, s.hash)
	}
	return s, nil
}
