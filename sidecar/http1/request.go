package http1

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

// clientSide relays and parses the client's requests until the client
// closes. It returns nil after a clean EOF, else the connection failure.
func (c *conn) clientSide() error {
	br := c.upBuf
	var prev *exchange
	gated := c.r.opts.RequestHook != nil
	// held: requests are forwarded once parsed (gated, or rewritten to
	// keep the upstream connection), not as they are read.
	held := c.up.hold
	var recent [maxUnrecorded]*exchange
	for stream := uint64(1); ; stream++ {
		if _, err := br.Peek(1); err != nil {
			if c.reusing() {
				// Between messages: the upstream connection stays open.
				return c.end(c.up, nil)
			}
			if err := c.up.closeHeld(); err != nil {
				return err
			}
			return c.end(c.up, nil)
		}
		c.throttle(recent[stream%maxUnrecorded])
		start := time.Now()
		c.up.limit = c.r.opts.MaxHeaderBytes
		req, err := http.ReadRequest(br)
		c.up.limit = -1
		if err != nil {
			if gated {
				// What cannot be parsed cannot be gated: fail closed.
				return c.unparsed(stream, err)
			}
			return c.rawAfter(c.up, br, "request", stream, err)
		}
		x := &exchange{
			stream:   stream,
			method:   req.Method,
			target:   req.RequestURI,
			host:     req.Host,
			upgrade:  upgradeRequested(req),
			start:    start,
			recorded: make(chan struct{}),
			answered: make(chan struct{}),
			switched: make(chan bool, 1),
			obs:      observe(c.sink, stream, req),
			proto11:  req.ProtoAtLeast(1, 1),
		}
		if x.upgrade {
			x.header = req.Header.Clone()
		}
		if c.upDeadline != nil {
			x.relayed = make(chan struct{})
		}
		if held {
			ok, err := c.gateRequest(x, prev, req)
			if !ok {
				return err
			}
		}
		select {
		case c.pending <- x:
		case <-c.upstreamDone:
			// Nobody answers any more; keep relaying, stop pairing.
			close(x.recorded)
			if gated {
				return c.end(c.up, nil) // nobody answers what is forwarded
			}
			if err := c.up.unhold(); err != nil {
				return err
			}
			return c.end(c.up, drain(br))
		}

		body := &capture{limit: c.r.opts.BodyCap}
		if x.metaOnly {
			body.limit = 0
		}
		var berr error
		if held {
			berr = c.copyBodyGated(body, req)
		} else {
			_, berr = copyBody(body, req)
		}
		x.end = time.Now()
		// Record off the relay path: the record waits for the previous
		// response's, while the client's next bytes keep flowing.
		c.records.Add(1)
		prevX := prev
		c.r.work.run(func() {
			defer c.records.Done()
			defer close(x.recorded)
			c.afterResponse(prevX)
			c.recordRequest(x, req, body)
		})
		prev = x
		c.last = x
		recent[stream%maxUnrecorded] = x
		if berr != nil {
			if gated {
				return c.unparsed(stream, berr)
			}
			return c.rawAfter(c.up, br, "request body", stream, berr)
		}
		if x.closeAfter {
			return c.dropRest(br)
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
				if err := c.up.unhold(); err != nil {
					return err
				}
				return c.end(c.up, c.drainUpgraded(br, x, true))
			}
		}
	}
}

// copyBodyGated reads a request body into dst like copyBody, forwarding
// exactly the bytes the parser consumed after each read: the body, never
// a pipelined request behind it, which waits for its own gate.
func (c *conn) copyBodyGated(dst *capture, req *http.Request) error {
	if req.Body == nil || req.Body == http.NoBody {
		return nil
	}
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	for {
		n, err := req.Body.Read(buf)
		_, _ = dst.Write(buf[:n])
		if rerr := c.up.release(c.up.consumed(c.upBuf)); rerr != nil {
			return rerr
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// dropRest reads the client that asked to close until it does (or for
// closeLinger after its response) and forwards none of it: a request
// after "Connection: close" is not one the upstream connection may carry.
func (c *conn) dropRest(br *bufio.Reader) error {
	c.up.discard = true
	c.up.drop(len(c.up.held))
	_, _ = io.Copy(io.Discard, br)
	return c.end(c.up, nil)
}

// unparsed ends a gated connection on a request that cannot be parsed:
// it is neither forwarded nor relayed raw.
func (c *conn) unparsed(stream uint64, err error) error {
	if f := c.up.failed(); f != nil {
		return f
	}
	c.parseFailed("request", stream, err)
	return fmt.Errorf("%w: unparsable request not forwarded: %w", ErrRefused, err)
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
	rec := requestRecord(x, req)
	rec.Body = b
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

// requestRecord is the record of x's request, without its body.
func requestRecord(x *exchange, req *http.Request) *event.HTTPRequest {
	return &event.HTTPRequest{
		Stream:  x.stream,
		Proto:   req.Proto,
		Method:  req.Method,
		URL:     req.RequestURI,
		Host:    req.Host,
		Headers: RedactHeaders(req.Header),
	}
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

// maxUnrecorded bounds the exchanges of one connection whose records are
// still being made. Recording runs beside the relay; when the machine
// cannot keep up with both, the relay waits for the recording instead of
// piling up records (and memory) without bound.
const maxUnrecorded = 8

// throttle waits, for at most PairWait, until old (the exchange
// maxUnrecorded before the next one; nil: none) has its response
// recorded. In the usual case it already has and nothing waits.
func (c *conn) throttle(old *exchange) {
	if old != nil {
		waitOrTimeout(old.answered, c.upstreamDone, c.r.opts.PairWait)
	}
}

// afterResponse waits, for at most PairWait, until the previous exchange's
// response was recorded, so that records come in conversation order: the
// client may send its next request as soon as the response bytes were
// relayed, which is before they were recorded.
func (c *conn) afterResponse(prev *exchange) {
	if prev == nil {
		return
	}
	if waitOrTimeout(prev.answered, c.upstreamDone, c.r.opts.PairWait) {
		return
	}
	// The upstream side ended (or PairWait passed): a response it had
	// already handed to a worker is being recorded, so keep the order.
	if prev.responded.Load() {
		waitOrTimeout(prev.answered, nil, c.r.opts.PairWait)
	}
}
