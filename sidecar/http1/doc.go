// Package http1 records an HTTP/1.x conversation between a client and an
// upstream server while relaying it byte for byte.
//
// Every byte read from one peer is written to the other before it is
// parsed, so the upstream sees exactly what the client sent and the client
// exactly what the upstream answered, whatever the parser makes of it.
// The parser works on that same stream (net/http's ReadRequest and
// ReadResponse over a tee), never holds a whole body, and keeps only a
// capped copy of each body for the record. When a peer speaks something the
// parser cannot follow, the exchange is recorded as far as it was
// understood, the error is reported, and the rest of the connection is
// relayed as raw bytes.
package http1
