//go:build tools

// Package tools records, as blank imports, the main packages that
// ../build.sh builds: kube-apiserver, kube-controller-manager and etcd.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
