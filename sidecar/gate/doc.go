// Package gate decides, in the sidecar's request path, what happens to
// each request of a session before a byte of it is forwarded: the policy
// in force says allow, deny or hold for approval (and at which level the
// exchange is recorded); a held request waits for people over the
// approvals protocol; and the pod's service-account credential is
// brokered: the agent's placeholder is swapped for the real token on
// requests to the Kubernetes API server and refused everywhere else.
//
// The policy in force comes from the server's distribution bucket (Watch),
// is kept next to the spool for a restart without the server, and can be
// replaced at any moment (Gate.Load): decisions read it without locks.
package gate
