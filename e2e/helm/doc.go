// Package helm locates the helm command that the chart tests run: built
// once by build.sh from the pinned tools module into a versioned cache
// directory, like the Kubernetes test bed (package kube).
package helm
