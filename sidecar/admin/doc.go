// Package admin is the sidecar's admin HTTP server, the one the kubelet
// probes: /healthz (the process serves), /readyz (every readiness check
// passes: the proxy listens, the recorder can record) and /metrics.
package admin
