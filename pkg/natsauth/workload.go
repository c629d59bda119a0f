package natsauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

// Kind says which grant a workload gets.
type Kind string

// Kinds of workload.
const (
	// KindPod is an agent pod's sidecar: its own session only.
	KindPod Kind = "pod"
	// KindNodeAgent is a node agent: events of any session on its node.
	KindNodeAgent Kind = "node-agent"
)

// Refusals of a token's identity; the callout wraps them with detail.
var (
	// ErrNotBound means the token names no pod: only pod-bound tokens
	// (projected volumes, TokenRequest with a pod reference) say which
	// session the workload is.
	ErrNotBound = errors.New("token not bound to a pod")
	// ErrClaims means the kubernetes.io claims are missing or inconsistent.
	ErrClaims = errors.New("bad kubernetes.io claims")
)

// Workload is who a verified token speaks for.
type Workload struct {
	Kind Kind
	// Subject is the token's subject,
	// system:serviceaccount:NAMESPACE:NAME.
	Subject        string
	Namespace      string
	ServiceAccount string
	Pod            string
	// PodUID is the pod's UID: the session id of an agent pod.
	PodUID string
	// Node is the node the pod runs on, when the token says so.
	Node string
	// Expiry is when the token expires; the NATS user expires with it.
	Expiry time.Time
}

// Session is the session a pod's sidecar records: the pod UID.
func (w Workload) Session() string { return w.PodUID }

// String names the workload for logs.
func (w Workload) String() string {
	return fmt.Sprintf("%s %s/%s (uid %s, service account %s)", w.Kind, w.Namespace, w.Pod, w.PodUID, w.ServiceAccount)
}

// ServiceAccountRef names a service account as NAMESPACE/NAME.
type ServiceAccountRef struct{ Namespace, Name string }

// ParseServiceAccountRef reads NAMESPACE/NAME.
func ParseServiceAccountRef(s string) (ServiceAccountRef, error) {
	ns, name, ok := strings.Cut(s, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return ServiceAccountRef{}, fmt.Errorf("service account %q: want NAMESPACE/NAME", s)
	}
	return ServiceAccountRef{Namespace: ns, Name: name}, nil
}

func (r ServiceAccountRef) String() string { return r.Namespace + "/" + r.Name }

// kubeClaims is the kubernetes.io claim of a service-account token.
type kubeClaims struct {
	Namespace      string   `json:"namespace"`
	Pod            *kubeRef `json:"pod"`
	ServiceAccount *kubeRef `json:"serviceaccount"`
	Node           *kubeRef `json:"node"`
}

type kubeRef struct {
	Name string `json:"name"`
	UID  string `json:"uid"`
}

// saPrefix starts the subject of every service-account token.
const saPrefix = "system:serviceaccount:"

// ParseWorkload reads the identity from a verified token's subject and
// claims (the JSON payload). The pod UID must be a valid session id: it
// becomes part of the subjects the workload is granted, so a wildcard or a
// dot in it would widen the grant. nodeAgents are the service accounts
// whose pods are node agents.
func ParseWorkload(subject string, payload []byte, expiry time.Time, nodeAgents []ServiceAccountRef) (Workload, error) {
	var claims struct {
		Kube *kubeClaims `json:"kubernetes.io"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return Workload{}, fmt.Errorf("%w: %w", ErrClaims, err)
	}
	k := claims.Kube
	if k == nil || k.ServiceAccount == nil || k.Namespace == "" || k.ServiceAccount.Name == "" {
		return Workload{}, fmt.Errorf("%w: no namespace and service account", ErrClaims)
	}
	if want := saPrefix + k.Namespace + ":" + k.ServiceAccount.Name; subject != want {
		return Workload{}, fmt.Errorf("%w: subject %q does not match service account %s/%s", ErrClaims, subject, k.Namespace, k.ServiceAccount.Name)
	}
	if k.Pod == nil || k.Pod.UID == "" || k.Pod.Name == "" {
		return Workload{}, fmt.Errorf("%w: service account %s/%s", ErrNotBound, k.Namespace, k.ServiceAccount.Name)
	}
	if err := event.ValidSession(k.Pod.UID); err != nil {
		return Workload{}, fmt.Errorf("%w: pod uid: %w", ErrClaims, err)
	}
	w := Workload{
		Kind:           KindPod,
		Subject:        subject,
		Namespace:      k.Namespace,
		ServiceAccount: k.ServiceAccount.Name,
		Pod:            k.Pod.Name,
		PodUID:         k.Pod.UID,
		Expiry:         expiry,
	}
	if k.Node != nil {
		w.Node = k.Node.Name
	}
	if slices.Contains(nodeAgents, ServiceAccountRef{Namespace: w.Namespace, Name: w.ServiceAccount}) {
		w.Kind = KindNodeAgent
	}
	return w, nil
}
