package http1

import (
	"net/http"
	"strings"
	"time"
)

// Keeping an upstream connection for the next client (Pair.Reuse).
//
// HTTP/1.1 says when a connection may carry another request: after a
// complete response, unless either side said "Connection: close". A
// client that is done with its connection either closes it between
// messages or asks for the close in its last request. Neither reaches the
// upstream on a connection with Reuse: the close option is taken out of
// the request (it is hop-by-hop; the record keeps it as sent), the
// sidecar adds "Connection: close" to the response and closes the client
// after it, and a client's half-close between messages ends only the
// client's side. Once the last response was relayed the upstream side
// stops reading (park), and the connection is reusable if nothing was
// left unread and the upstream did not ask to close.

// readDeadliner is a Conn whose reads can be interrupted.
type readDeadliner interface {
	SetReadDeadline(t time.Time) error
}

// closeLinger bounds how long a client that asked to close may keep its
// connection open after its last response.
const closeLinger = time.Second

// keepUpstream decides, for a request about to be forwarded on a
// connection with Reuse, whether the upstream connection stays fit for
// reuse, and takes the client's close option out of the request. It
// returns the header lines to rewrite (Connection) and their new values.
func (c *conn) keepUpstream(x *exchange, req *http.Request) (changed []string, h http.Header) {
	if !c.reusing() {
		return nil, nil
	}
	if !req.ProtoAtLeast(1, 1) || x.upgrade {
		// HTTP/1.0 keep-alive and upgrades are left as they are: the
		// connection goes with this client.
		c.noReuse = true
		return nil, nil
	}
	if !req.Close {
		return nil, nil
	}
	x.closeAfter = true
	var keep []string
	for tok := range connectionOptions(req.Header) {
		if !strings.EqualFold(tok, "close") {
			keep = append(keep, tok)
		}
	}
	h = http.Header{}
	if len(keep) > 0 {
		h["Connection"] = []string{strings.Join(keep, ", ")}
	}
	return []string{"Connection"}, h
}

// reusing reports whether the upstream connection may still go to
// another client once this one is done (client side).
func (c *conn) reusing() bool { return c.upDeadline != nil && !c.noReuse }

// park stops the upstream side after the client ended between messages:
// once the last response was relayed, its read is interrupted, which ends
// it cleanly with the connection still open.
func (c *conn) park() {
	x := c.last
	if x != nil {
		if x.closeAfter {
			return // the upstream side stopped after that response
		}
		select {
		case <-x.relayed:
		case <-c.upstreamDone:
			return
		}
	}
	c.down.parked.Store(true)
	_ = c.upDeadline.SetReadDeadline(time.Unix(1, 0))
}

// closeClient ends a connection whose client asked to close: its last
// response was relayed, so it is told EOF, and what it still sends is
// read and dropped for at most closeLinger.
func (c *conn) closeClient() {
	_ = c.pair.Client.CloseWrite()
	if d, ok := c.pair.Client.(readDeadliner); ok {
		_ = d.SetReadDeadline(time.Now().Add(closeLinger))
	}
}

// closeHead returns a response head (status line, header lines and the
// blank line, as the upstream sent them) that tells the client the
// connection closes: its Connection lines are replaced by
// "Connection: close".
func closeHead(head []byte) ([]byte, error) {
	return rewriteHead(head, http.Header{"Connection": {"close"}}, []string{"Connection"})
}
