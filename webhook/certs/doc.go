// Package certs bootstraps the webhook's serving certificate: it creates its
// own ECDSA CA and serving certificate in a directory, renews them before
// they expire, serves the current one through tls.Config.GetCertificate (no
// restart), and keeps the caBundle of the MutatingWebhookConfiguration that
// points at the webhook current.
package certs
