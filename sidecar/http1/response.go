package http1

import (
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

// upstreamSide relays and parses the upstream's responses, pairing each
// final response with the oldest unanswered request. It returns nil after
// a clean EOF, else the connection failure.
func (c *conn) upstreamSide() (err error) {
	br := c.downBuf
	defer func() {
		// Whatever is still held goes to the client as it came.
		if uerr := c.down.unhold(); uerr != nil && err == nil {
			err = uerr
		}
	}()
	var x *exchange // the request being answered
	// open: the upstream's last final response left its connection open
	// (a fresh one is).
	open := true
	decide := func(switched bool) {
		if x != nil && x.upgrade {
			x.switched <- switched
		}
	}
	defer func() { decide(false) }()
	for n := uint64(1); ; n++ {
		if _, err := br.Peek(1); err != nil {
			if errors.Is(err, errParked) {
				c.upIdle = open
				return nil
			}
			return c.end(c.down, nil)
		}
		if x == nil {
			x = c.nextExchange()
		}
		stream := uint64(0)
		method, target := http.MethodGet, ""
		if x != nil {
			stream, method, target = x.stream, x.method, x.target
		}
		c.down.limit = c.r.opts.MaxHeaderBytes
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		c.down.limit = -1
		headersAt := time.Now()
		if err != nil {
			if x != nil && c.down.failed() == nil {
				c.recordResponseAsync(x, &event.HTTPResponse{Stream: stream, Error: "malformed response: " + err.Error()}, nil, "", "", headersAt, headersAt)
			}
			return c.rawAfter(c.down, br, "response", stream, err)
		}
		switched := resp.StatusCode == http.StatusSwitchingProtocols ||
			(method == http.MethodConnect && resp.StatusCode/100 == 2)
		var rw BodyRewriter
		if c.rw != nil && x != nil && !switched && Rewritable(method, resp.StatusCode) {
			rw = c.rw.RewriteResponse(method, target, resp.StatusCode, resp.Header)
		}
		final := resp.StatusCode/100 != 1 || resp.StatusCode == http.StatusSwitchingProtocols
		if c.down.hold {
			switch {
			case rw != nil:
				c.down.skip(c.consumed())
			case final && x != nil && x.closeAfter:
				if ferr := c.stageCloseHead(); ferr != nil {
					return ferr
				}
			case final && !switched && br.Buffered() > 0:
				// The body's first bytes are here: the head goes with
				// them (copyResponse forwards), in one write.
			default:
				if ferr := c.down.forward(c.consumed()); ferr != nil {
					return ferr
				}
			}
		}
		if !final {
			continue // informational: the final response follows
		}
		body := &capture{limit: c.r.opts.BodyCap}
		if x != nil && x.metaOnly {
			body.limit = 0
		}
		var berr error
		if !switched {
			berr = c.copyResponse(x, body, resp, rw)
		}
		if rw != nil && berr != nil {
			// Part of a rewritten body went out: the client must not take
			// it for whole, nor get raw bytes after it.
			return berr
		}
		rec := &event.HTTPResponse{
			Stream:  stream,
			Proto:   resp.Proto,
			Status:  resp.StatusCode,
			Headers: redactOwned(resp.Header), // resp is not read again
		}
		if berr != nil && c.down.failed() == nil {
			rec.Error = "response body: " + berr.Error()
		}
		if x == nil {
			rec.Error = "response without a request"
		}
		// Record off the relay path, like requests: the next response's
		// bytes keep flowing while this one is filtered and published.
		c.recordResponseAsync(x, rec, body, method, target, headersAt, time.Now())
		switch {
		case berr != nil:
			return c.rawAfter(c.down, br, "response body", stream, berr)
		case switched:
			c.upgraded(x, resp)
			decide(true)
			sw := x
			x = nil
			c.mu.Lock()
			c.stats.Upgraded = true
			c.mu.Unlock()
			if err := c.down.unhold(); err != nil {
				return err
			}
			return c.end(c.down, c.drainUpgraded(br, sw, false))
		case x == nil:
			// Pairing is lost; relay the rest without parsing.
			c.parseFailed("response", 0, errUnpaired)
			if err := c.down.unhold(); err != nil {
				return err
			}
			return c.end(c.down, drain(br))
		}
		decide(false)
		if c.upDeadline != nil {
			// Go's parser folds the upstream's "Connection: close" (and
			// a body that ends with the connection) into resp.Close.
			open = !resp.Close
			close(x.relayed)
			if x.closeAfter {
				// The client asked to close: the upstream connection
				// is not read any further, and the client is closed.
				c.upIdle = open && br.Buffered() == 0
				c.closeClient()
				return nil
			}
		}
		x = nil
	}
}

// stageCloseHead puts "Connection: close" into the response head the
// parser just read (see closeHead); the head goes to the client with the
// body's first bytes.
func (c *conn) stageCloseHead() error {
	to := c.consumed()
	head, err := closeHead(c.down.held[:int(to-c.down.heldAt)])
	if err != nil {
		return err
	}
	c.down.replaceHead(int(to-c.down.heldAt), head)
	return nil
}

var errUnpaired = errors.New("response without a request")

// copyResponse reads a response body to its end into body, showing it to
// the exchange's observer as it goes.
// rw, when set, rewrites the body on its way to the client; else, on a
// connection that holds responses, the raw bytes are relayed as they are
// parsed.
func (c *conn) copyResponse(x *exchange, body *capture, resp *http.Response, rw BodyRewriter) error {
	var w io.Writer = body
	if x != nil && x.obs != nil {
		x.obs.ResponseHead(resp.StatusCode, resp.Header)
		w = observed{body, x.obs}
	}
	if rw != nil {
		err := c.rewrite(w, resp, rw, x.proto11, x.closeAfter)
		c.down.skip(c.consumed())
		return err
	}
	var src io.Reader = resp.Body
	if c.down.hold {
		src = forwarding{r: resp.Body, c: c}
	}
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	_, err := io.CopyBuffer(w, src, *bp)
	if err == nil && c.down.hold {
		err = c.down.forward(c.consumed())
	}
	return err
}

// nextExchange returns the oldest request not yet answered. A response that
// arrives before any request waits a little for one (the request's head may
// still be in the parser), then goes unpaired.
func (c *conn) nextExchange() *exchange {
	select {
	case x := <-c.pending:
		return x
	default:
	}
	t := time.NewTimer(c.r.opts.PairWait)
	defer t.Stop()
	select {
	case x := <-c.pending:
		return x
	case <-c.clientDone:
		select {
		case x := <-c.pending:
			return x
		default:
			return nil
		}
	case <-t.C:
		return nil
	}
}

// recordResponseAsync records rec on a worker, tracked by c.records:
// body (nil: none) is turned into rec.Body first, then recordResponse keeps
// the conversation order.
func (c *conn) recordResponseAsync(x *exchange, rec *event.HTTPResponse, body *capture, method, target string, headersAt, end time.Time) {
	if x != nil {
		x.responded.Store(true)
	}
	c.records.Add(1)
	c.r.work.run(func() {
		defer c.records.Done()
		c.recordResponse(x, rec, body, method, target, headersAt, end)
	})
}

// recordResponse records rec for x (nil: unpaired) after x's request was
// recorded, so that a request's record precedes its response's. A response
// that overtakes its request (sent before the request body ended) waits at
// most PairWait.
func (c *conn) recordResponse(x *exchange, rec *event.HTTPResponse, body *capture, method, target string, headersAt, end time.Time) {
	if x != nil {
		if waitOrTimeout(x.recorded, nil, c.r.opts.PairWait) {
			if lat := headersAt.Sub(x.end); lat > 0 {
				rec.Latency = lat
			}
		}
		rec.Duration = end.Sub(x.start)
	}
	if body != nil {
		// After the request's record: a body's blob precedes only the
		// record that names it.
		b, err := c.r.body(c.ctx, c.sink, body, method, target, true)
		if err != nil {
			c.recordFailed(err)
		}
		rec.Body = b
	}
	if err := c.sink.Response(c.ctx, headersAt, rec); err != nil {
		c.recordFailed(err)
	}
	if x != nil && x.obs != nil {
		x.obs.End(c.ctx, end, rec.Error)
	}
	if x != nil {
		close(x.answered)
	}
	c.mu.Lock()
	c.stats.Responses++
	c.mu.Unlock()
}

// waitOrTimeout waits until done or stop (nil: never) closes, for at most
// d, and reports whether done closed. The usual case, done already closed,
// costs no timer.
func waitOrTimeout(done, stop <-chan struct{}, d time.Duration) bool {
	select {
	case <-done:
		return true
	default:
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-stop:
		return false
	case <-t.C:
		return false
	}
}
