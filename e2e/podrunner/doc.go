// Package podrunner runs a Pod, as the API server stored it after the
// admission webhooks, the way a kubelet would but without one: its
// containers become local processes inside a network namespace of package
// sandbox, in the kubelet's order (init containers one after another, a
// native sidecar started and probed before what follows, then the ordinary
// containers with their postStart hooks), with the Pod's volumes as
// directories on the host.
//
// Images are not pulled: Options.Images maps an image repository to a
// directory holding its commands (the project's binaries), and any other
// command is looked up on the machine. Paths under a container's volume
// mounts, in its command, arguments and environment, are rewritten to the
// host directories of those volumes; downward-API values, ConfigMaps,
// Secrets and service-account tokens come from the Pod object and the API
// server, as the kubelet would fetch them.
package podrunner
