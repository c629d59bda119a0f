// Package webhook is Chaperone's sidecar-injecting mutating admission
// webhook: Inject is the pure mutation of a Pod (init container that installs
// the redirect rules, the recording sidecar, trust bundle, placeholder
// service-account token, requested-by stamping), StampTemplate does the
// requested-by part for workloads with a pod template, and Handler is the thin
// controller-runtime admission.Handler around both.
package webhook
