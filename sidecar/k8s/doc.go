// Package k8s understands requests to the Kubernetes API server as they
// pass through the sidecar.
//
// It tells whether a connection goes to the API server (Target), decodes a
// request's method and URL into the fields of an audit.k8s.io/v1 event
// (Decode: verb, API group and version, resource, subresource, namespace,
// name — by the rules of the API server's own RequestInfoFactory), and
// masks the values of Secrets in recorded bodies (MaskSecrets), whatever
// else is configured: a Secret's data never reaches a recording.
package k8s
