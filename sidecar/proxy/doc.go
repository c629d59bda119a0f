// Package proxy is the sidecar's recording proxy: it accepts the agent's
// redirected outbound TCP connections, recovers each one's original
// destination, dials it, tells the protocol from the client's first bytes,
// relays the connection and records it.
//
// Every connection yields a conn.open and a conn.close event (or a refused
// conn.open); HTTP/1.x and HTTP/2 connections (over intercepted TLS, or
// h2c with prior knowledge) also yield an http.request and an
// http.response per exchange, and stream.data events for streamed
// responses (see packages http1 and http2). Requests to the Kubernetes
// API server (Options.KubeAPI) yield a k8s.request event each once their
// response status is known, and Secret values are masked in every
// recorded body (package k8s). Other protocols are, for now, relayed raw
// with their byte counts.
//
// Recording comes first: when the Recorder cannot guarantee recording and
// the proxy is not fail-open, new connections are refused rather than
// relayed unrecorded.
package proxy
