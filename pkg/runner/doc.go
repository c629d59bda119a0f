// Package runner runs a command behind a real recording sidecar without
// Kubernetes: the data path of an agent pod, on one machine.
//
// Run creates a fresh network namespace wired to the host by a veth pair
// (package sandbox), installs the redirect rules inside it with
// `chaperone-sidecar init`, starts `chaperone-sidecar proxy` there under
// the sidecar's own UID, and runs the command inside with CAP_NET_ADMIN and
// CAP_NET_RAW dropped, so it can neither change the rules nor bypass them.
// The sidecar reaches the server's NATS through a relay on the host side of
// the veth, so the server itself may stay on loopback.
package runner
