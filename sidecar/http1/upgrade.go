package http1

import (
	"bufio"
	"context"
	"io"
	"net/http"
)

// Upgrade describes a connection whose upstream switched protocols with a
// 101 response: the request that asked for it and the response's headers.
type Upgrade struct {
	// Stream is the request's number on the connection (1-based).
	Stream uint64
	// Method, Target and Host are the request's method, request-target
	// ("/path?query") and Host header.
	Method, Target, Host string
	// Request and Response are the two heads' headers; the negotiated
	// protocol is the response's Upgrade and Sec-WebSocket-Protocol.
	Request, Response http.Header
}

// Tap watches the bytes of an upgraded connection after the 101 response:
// each direction's bytes in the order they were relayed, in chunks of any
// size. It never changes them: they have already been relayed when the tap
// sees them. ClientBytes and ServerBytes are called from the relay's two
// goroutines, possibly at once; Close once, after both directions ended.
// *streams.Decoder is one.
type Tap interface {
	ClientBytes(p []byte)
	ServerBytes(p []byte)
	Close()
}

// UpgradeSink is implemented by a Sink that decodes what follows a switch
// of protocols (Kubernetes exec, attach and port-forward streams, say).
// Upgraded is called once the 101 response was read, before any byte after
// it is handed on; a nil Tap leaves the rest of the connection unwatched.
type UpgradeSink interface {
	Upgraded(ctx context.Context, u *Upgrade) Tap
}

// tapWriter hands one direction's bytes to a Tap. The first write waits
// (at most PairWait) until the 101 response was recorded, so that a
// stream's records follow the exchange that opened it.
type tapWriter struct {
	c          *conn
	x          *exchange
	fromClient bool
	waited     bool
}

func (w *tapWriter) Write(p []byte) (int, error) {
	if !w.waited {
		w.waited = true
		waitOrTimeout(w.x.answered, nil, w.c.r.opts.PairWait)
	}
	if w.fromClient {
		w.x.tap.ClientBytes(p)
	} else {
		w.x.tap.ServerBytes(p)
	}
	return len(p), nil
}

// upgraded asks the sink for a Tap for exchange x, answered by resp. It
// runs on the upstream side before the switch is announced to the client
// side, which reads x.tap after that.
func (c *conn) upgraded(x *exchange, resp *http.Response) {
	us, ok := c.sink.(UpgradeSink)
	if !ok || x == nil || resp.StatusCode != http.StatusSwitchingProtocols {
		return
	}
	x.tap = us.Upgraded(c.ctx, &Upgrade{
		Stream:   x.stream,
		Method:   x.method,
		Target:   x.target,
		Host:     x.host,
		Request:  x.header,
		Response: resp.Header.Clone(),
	})
	if x.tap != nil {
		c.mu.Lock()
		c.tap = x.tap
		c.mu.Unlock()
	}
}

// drainUpgraded relays the rest of one side after a switch of protocols,
// through x's tap when it has one.
func (c *conn) drainUpgraded(br *bufio.Reader, x *exchange, fromClient bool) error {
	if x == nil || x.tap == nil {
		return drain(br)
	}
	_, err := io.Copy(&tapWriter{c: c, x: x, fromClient: fromClient}, br)
	return err
}
