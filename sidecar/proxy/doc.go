// Package proxy is the sidecar's recording proxy: it accepts the agent's
// redirected outbound TCP connections, recovers each one's original
// destination, dials it, tells the protocol from the client's first bytes,
// relays the connection and records it.
//
// Every connection yields a conn.open and a conn.close event (or a refused
// conn.open); HTTP/1.x connections also yield an http.request and an
// http.response per exchange (see package http1). Other protocols are, for
// now, relayed raw with their byte counts.
//
// Recording comes first: when the Recorder cannot guarantee recording and
// the proxy is not fail-open, new connections are refused rather than
// relayed unrecorded.
package proxy
