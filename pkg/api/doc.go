// Package api is chaperone-server's HTTP API: health and readiness, metrics,
// the OpenAPI document, and the read side of recorded sessions (listing,
// summaries, event export as JSON lines, replay as server-sent events with
// the original timing, hash-chain verification and blob download).
//
// New returns one http.Handler that routes with net/http method patterns,
// answers every error as JSON {"error": "...", "param": "..."}, logs each
// request through slog, counts it in Prometheus metrics, and tags it with a
// request id (header X-Request-Id). Authentication is not done here; the
// server binary wraps the handler when it runs outside local mode.
package api
