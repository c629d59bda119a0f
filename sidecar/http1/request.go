package http1

import (
	"bufio"
	"net/http"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

// clientSide relays and parses the client's requests until the client
// closes. It returns nil after a clean EOF, else the connection failure.
func (c *conn) clientSide() error {
	br := c.upBuf
	var prev *exchange
	for stream := uint64(1); ; stream++ {
		if _, err := br.Peek(1); err != nil {
			return c.end(c.up, nil)
		}
		start := time.Now()
		c.up.limit = c.r.opts.MaxHeaderBytes
		req, err := http.ReadRequest(br)
		c.up.limit = -1
		if err != nil {
			return c.rawAfter(c.up, br, "request", stream, err)
		}
		x := &exchange{
			stream:   stream,
			method:   req.Method,
			target:   req.RequestURI,
			upgrade:  upgradeRequested(req),
			start:    start,
			recorded: make(chan struct{}),
			answered: make(chan struct{}),
			switched: make(chan bool, 1),
			obs:      observe(c.sink, stream, req),
			proto11:  req.ProtoAtLeast(1, 1),
		}
		select {
		case c.pending <- x:
		case <-c.upstreamDone:
			// Nobody answers any more; keep relaying, stop pairing.
			close(x.recorded)
			return c.end(c.up, drain(br))
		}

		body := &capture{limit: c.r.opts.BodyCap}
		_, berr := copyBody(body, req)
		x.end = time.Now()
		// Record off the relay path: the record waits for the previous
		// response's, while the client's next bytes keep flowing.
		c.records.Add(1)
		go func(prev *exchange) {
			defer c.records.Done()
			defer close(x.recorded)
			c.afterResponse(prev)
			c.recordRequest(x, req, body)
		}(prev)
		prev = x
		if berr != nil {
			return c.rawAfter(c.up, br, "request body", stream, berr)
		}
		if x.upgrade {
			// Relay on until the client sends more (it may speak the new
			// protocol before the answer), then learn how to treat it.
			if _, err := br.Peek(1); err != nil {
				return c.end(c.up, nil)
			}
			var switched bool
			select {
			case switched = <-x.switched:
			case <-c.upstreamDone:
				switched = true // whatever follows is not ours to parse
			}
			if switched {
				return c.end(c.up, drain(br))
			}
		}
	}
}

// copyBody reads a request body through the tee into the capture.
func copyBody(dst *capture, req *http.Request) (int64, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return 0, nil
	}
	return copyInto(dst, req.Body)
}

func (c *conn) recordRequest(x *exchange, req *http.Request, body *capture) {
	b, err := c.r.body(c.ctx, c.sink, body, req.Method, req.RequestURI, false)
	if err != nil {
		c.recordFailed(err)
	}
	rec := &event.HTTPRequest{
		Stream:  x.stream,
		Proto:   req.Proto,
		Method:  req.Method,
		URL:     req.RequestURI,
		Host:    req.Host,
		Headers: RedactHeaders(req.Header),
		Body:    b,
	}
	if err := c.sink.Request(c.ctx, x.start, rec); err != nil {
		c.recordFailed(err)
	}
	if x.obs != nil {
		x.obs.RequestBody(c.ctx, x.start, body.buf, body.size)
	}
	c.mu.Lock()
	c.stats.Requests++
	c.mu.Unlock()
}

// rawAfter handles a parse error on one side: when the connection itself
// failed it ends the side with that failure; when the peer closed mid
// message it notes the error and ends cleanly; otherwise it notes the
// error and relays the rest raw.
func (c *conn) rawAfter(t *tee, br *bufio.Reader, what string, stream uint64, err error) error {
	if f := t.failed(); f != nil {
		return f
	}
	c.parseFailed(what, stream, err)
	t.limit = -1
	if err := t.unhold(); err != nil {
		return err
	}
	return c.end(t, drain(br))
}

// end returns the side's outcome: its connection failure, or err.
func (c *conn) end(t *tee, err error) error {
	if f := t.failed(); f != nil {
		return f
	}
	return err
}

// afterResponse waits, for at most PairWait, until the previous exchange's
// response was recorded, so that records come in conversation order: the
// client may send its next request as soon as the response bytes were
// relayed, which is before they were recorded.
func (c *conn) afterResponse(prev *exchange) {
	if prev == nil {
		return
	}
	waitOrTimeout(prev.answered, c.upstreamDone, c.r.opts.PairWait)
}
