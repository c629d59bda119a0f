// Package http2 records HTTP/2 conversations between a client and an
// upstream server.
//
// Unlike HTTP/1, HTTP/2 cannot be relayed byte for byte while it is
// parsed: both peers negotiate their own flow control and header
// compression. The recorder therefore terminates HTTP/2 on both legs
// (golang.org/x/net/http2): it serves the client's connection and forwards
// every request as a stream of one upstream connection built on the
// given upstream conn, so that one client connection maps to one upstream
// connection and the upstream sees the client's streams as they were sent.
//
// Each request becomes an event.HTTPRequest and each response an
// event.HTTPResponse, with bodies capped like package http1 caps them.
// Responses that last (watches, server-sent events, gRPC streams) are
// recorded as they flow: their headers at once, their body as stream.data
// chunks, then a final record with totals. Every chunk reaches the client
// before it is recorded; nothing is buffered on the way.
package http2
