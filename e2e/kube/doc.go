// Package kube is the Kubernetes test bed for Chaperone's end-to-end tests:
// a real etcd, kube-apiserver and kube-controller-manager, built once from
// their Go modules by build.sh into a versioned cache directory and started
// here as processes on random loopback ports.
//
// The control plane is configured like a small real cluster: TLS with a
// self-generated CA, client-certificate and static-token authentication (an
// admin in system:masters and a less privileged developer user), Node,RBAC
// authorization, the admission webhooks and ValidatingAdmissionPolicy, and a
// service-account issuer with its discovery document and JWKS.
//
// There is no kubelet and no kube-scheduler. (*Cluster).AddNode registers a
// Node object that reports Ready, and a small binder run by the harness binds
// every unscheduled pod to the first node added, so a Deployment goes all the
// way to a Pod with spec.nodeName set. Pods stay Pending: nothing runs their
// containers unless a test does so itself.
//
// (*Cluster).StartNode adds a node with a stand-in kubelet instead (Node):
// the API server reaches it like a kubelet, over TLS with the cluster CA and
// its kubelet client certificate, and it serves exec, attach and
// port-forward with the kubelet's own streaming server running real
// processes on this machine; Node.RunPod puts a Running pod on it.
//
// Tests call Require to locate the binaries (it fails, never skips, with the
// command that builds them) and StartTest to run a cluster for one test.
package kube
