// Package natsauth decides who may do what on Chaperone's NATS.
//
// Workloads (sidecars and node agents) connect with a service-account
// token as their NATS connect token. The server answers the NATS auth
// callout for them (Service): it verifies the token with go-oidc against a
// trusted issuer (the cluster's service-account issuer, or in one-machine
// mode the server's own LocalIssuer), reads the pod the token is bound to
// from its kubernetes.io claims, and issues a NATS user that may publish
// only to that pod's session (the session id is the pod UID), ask for
// approvals for it, and read the policy bucket. Package natscred holds
// the options a workload connects with.
package natsauth
