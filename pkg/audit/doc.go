// Package audit converts a session's recorded Kubernetes API requests into
// audit.k8s.io/v1 Event objects, as the API server's log backend writes
// them, so that tools built for Kubernetes audit logs can read what an
// agent did through the sidecar.
//
// Each k8s.request event of a session becomes one Event at stage
// ResponseComplete, filled from the http.request and http.response of
// the same exchange (request URI, user agent, objects, timestamps) and
// from the connection's conn.open (source IP). Bodies are taken as they
// were recorded: Secret values are already masked.
package audit
