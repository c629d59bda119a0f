// Package kubepolicy feeds SessionPolicy objects from a Kubernetes cluster
// into policy distribution: a Watcher watches them cluster-wide with a
// client-go informer, publishes the whole list (debounced) whenever it
// changes and compiles, and keeps each object's Ready condition in its
// status subresource.
//
// When the list does not compile (an object got past the validating
// webhook, e.g. while it was down), nothing is published: the last good set
// stays distributed, the broken objects get Ready=False with reason
// CompileError and the policy, rule and CEL error, and the others say
// whether their current version is in the set that stays.
package kubepolicy
