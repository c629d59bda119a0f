package sniff

import (
	"bytes"
	"encoding/binary"
)

// Protocol is what a connection was recognised as. The values are the ones
// event.Destination.Protocol uses.
type Protocol string

// Recognised protocols.
const (
	TCP      Protocol = "tcp"
	TLS      Protocol = "tls"
	HTTP1    Protocol = "http1"
	HTTP2    Protocol = "http2"
	Postgres Protocol = "postgres"
)

// h2Preface is the HTTP/2 connection preface of a prior-knowledge client.
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// methods are the request methods accepted as the start of an HTTP/1.x
// request line: RFC 9110's, PATCH, and the WebDAV ones clients really send.
var methods = []string{
	"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
	"PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "REPORT", "SEARCH",
}

// PostgreSQL startup-phase request codes (the second int32 of the message).
const (
	pgProtocol3  = 196608   // StartupMessage, protocol 3.0
	pgSSLRequest = 80877103 // SSLRequest
	pgGSSRequest = 80877104 // GSSENCRequest
	pgCancel     = 80877102 // CancelRequest
)

// classifiers are tried in order; the HTTP/2 preface goes before HTTP/1 so
// that "PRI * HTTP/2.0" is never taken for a request line.
var classifiers = []struct {
	proto Protocol
	match func([]byte) (match, more bool)
}{
	{HTTP2, isH2},
	{HTTP1, isHTTP1},
	{TLS, isTLS},
	{Postgres, isPostgres},
}

// Classify names the protocol that data, the first bytes a client sent,
// starts. more is true when data is a prefix of a recognised protocol's
// opening but too short to decide; the caller should read more and ask
// again, or settle for proto (TCP) when no more arrives.
func Classify(data []byte) (proto Protocol, more bool) {
	if len(data) == 0 {
		return TCP, true
	}
	undecided := false
	for _, c := range classifiers {
		match, need := c.match(data)
		if match {
			return c.proto, false
		}
		undecided = undecided || need
	}
	return TCP, undecided
}

// isH2 matches the HTTP/2 preface. The first 16 bytes ("PRI * HTTP/2.0\r\n")
// are enough: no HTTP/1 method is PRI.
func isH2(data []byte) (match, more bool) {
	const need = 16
	n := min(len(data), need)
	if !bytes.Equal(data[:n], []byte(h2Preface[:n])) {
		return false, false
	}
	return n == need, n < need
}

// isHTTP1 matches a known method followed by a space and a request target
// that starts like one ('/', '*', or an absolute URI or authority).
func isHTTP1(data []byte) (match, more bool) {
	for _, m := range methods {
		full := m + " "
		n := min(len(data), len(full))
		if !bytes.Equal(data[:n], []byte(full[:n])) {
			continue
		}
		if n < len(full) {
			more = true
			continue
		}
		if len(data) == len(full) {
			more = true
			continue
		}
		c := data[len(full)]
		if c > ' ' && c < 0x7f {
			return true, false
		}
	}
	return false, more
}

// isTLS matches a TLS handshake record (type 22, version 3.x with x <= 4,
// a plausible length) whose first message is a ClientHello.
func isTLS(data []byte) (match, more bool) {
	if data[0] != 0x16 {
		return false, false
	}
	if len(data) < 6 {
		if len(data) >= 2 && data[1] != 0x03 {
			return false, false
		}
		if len(data) >= 3 && data[2] > 0x04 {
			return false, false
		}
		return false, true
	}
	if data[1] != 0x03 || data[2] > 0x04 {
		return false, false
	}
	n := int(binary.BigEndian.Uint16(data[3:5]))
	if n == 0 || n > 1<<14+2048 {
		return false, false
	}
	return data[5] == 0x01, false
}

// isPostgres matches the first message of the PostgreSQL startup phase:
// int32 length, int32 code.
func isPostgres(data []byte) (match, more bool) {
	if len(data) < 8 {
		// Lengths are small, so a startup message starts with two zero bytes.
		for i := 0; i < len(data) && i < 2; i++ {
			if data[i] != 0 {
				return false, false
			}
		}
		return false, true
	}
	n := binary.BigEndian.Uint32(data[0:4])
	code := binary.BigEndian.Uint32(data[4:8])
	switch code {
	case pgSSLRequest, pgGSSRequest:
		return n == 8, false
	case pgCancel:
		return n == 16, false
	case pgProtocol3:
		return n >= 8 && n <= 10000, false
	}
	return false, false
}
