// Package webhook is Chaperone's sidecar-injecting mutating admission
// webhook: Inject is the pure mutation of a Pod (init container that installs
// the redirect rules, the recording sidecar, trust bundle, placeholder
// service-account token, requested-by stamping), StampTemplate does the
// requested-by part for workloads with a pod template, and Handler is the thin
// controller-runtime admission.Handler around both.
//
// The package is also the source of truth for what the Helm chart ships
// around it: the MutatingWebhookConfiguration's webhooks, the
// ValidatingAdmissionPolicy that keeps opted-in pods fail-closed while the
// webhook is down (ChartFiles, written by `make generate`), and the sidecar
// defaults that values.yaml repeats (DefaultSidecarValues, checked by a
// test).
package webhook

//go:generate go run ./internal/genchart ../charts/chaperone/files
