//go:build tools

// Package tools records, as a blank import, the helm command that
// ../build.sh builds for the chart tests.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
