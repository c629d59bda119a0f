// Package sandbox runs processes in a fresh network namespace connected to
// the host by a veth pair, the way an agent pod is wired, but without
// Kubernetes. chaperonectl run and the end-to-end tests use it to put a
// command behind the sidecar's redirect rules.
//
// Each Sandbox gets a private link-local /30 (169.254.X.Y, chosen among the
// blocks no host address uses) and a random IPv6 ULA /64. Inside, lo and eth0
// are up and the default routes point at the host side, so the host's own
// addresses (HostIP) are reachable. Nothing is forwarded or masqueraded
// beyond the host: traffic to other networks has no route out unless the
// caller sets that up.
//
// Processes are started inside with Sandbox.Start: the calling goroutine is
// locked to its OS thread, the thread joins the namespace, the child is
// forked (children inherit the forking thread's namespace) and the thread
// returns to its original namespace. If it cannot, the thread is left locked
// so the Go runtime discards it instead of reusing a thread in the wrong
// namespace.
//
// ExecOptions.DropNetAdmin takes CAP_NET_ADMIN and CAP_NET_RAW away from a
// child that runs as root, so it cannot undo the redirect rules or send raw
// packets. The child is started as /proc/self/exe with a hidden first
// argument; a binary opts in by calling MaybeRunHelper at the top of main
// (and of TestMain). In that mode the process locks its thread, drops both
// capabilities from the bounding, inheritable, permitted, effective and
// ambient sets, and execs the real command. Dropping them from the bounding
// and inheritable sets matters: execve as root would otherwise grant them
// again.
package sandbox
