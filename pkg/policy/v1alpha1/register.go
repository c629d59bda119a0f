package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Group and Version name the API this package implements.
const (
	Group   = "chaperone.dev"
	Version = "v1alpha1"
	// Kind is the kind of a SessionPolicy object.
	Kind = "SessionPolicy"
)

// APIVersion is the apiVersion field value of a SessionPolicy.
const APIVersion = Group + "/" + Version

// GroupVersion is the group and version of the types in this package.
var GroupVersion = schema.GroupVersion{Group: Group, Version: Version}

// AddToScheme registers SessionPolicy and SessionPolicyList with a scheme,
// for clients (controller-runtime, client-go) that decode them.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &SessionPolicy{}, &SessionPolicyList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
