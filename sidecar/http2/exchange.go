package http2

import (
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/sidecar/http1"
)

// exchange is one stream: its request and response records. mu orders the
// stream's records (request, then response headers, chunks, end) and
// guards everything below it.
type exchange struct {
	c         *conn
	id        uint64
	start     time.Time
	url       *url.URL
	method    string
	authority string
	grpc      bool

	mu     sync.Mutex
	req    *event.HTTPRequest // nil once recorded
	reqBuf []byte
	reqLen int64
	reqMsg grpcFrames
	reqEnd time.Time
	// reqOpen is set while the request body flows.
	reqOpen bool
	// metaOnly records the stream without body content (the request
	// hook's Verdict): sizes and timings only.
	metaOnly bool
	// obs observes the exchange for the sink; nil when it does not.
	obs http1.Exchange
}

func (x *exchange) setMetaOnly(v bool) {
	x.mu.Lock()
	x.metaOnly = v
	x.mu.Unlock()
}

func (x *exchange) isMetaOnly() bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.metaOnly
}

func (c *conn) newExchange(w http.ResponseWriter, r *http.Request) *exchange {
	id, ok := streamID(w)
	if !ok {
		// Client streams are odd and increasing; the order handlers start
		// in is close enough when the real id is out of reach.
		id = 2*c.nextID.Add(1) - 1
	}
	authority := r.Host
	if authority == "" {
		authority = c.host
	}
	x := &exchange{
		c:         c,
		id:        id,
		start:     time.Now(),
		method:    r.Method,
		authority: authority,
		grpc:      isGRPC(r.Header.Get("Content-Type")),
	}
	x.url = requestURL(c.scheme, authority, r)
	x.req = &event.HTTPRequest{
		Stream:  id,
		Proto:   "HTTP/2.0",
		Method:  r.Method,
		URL:     x.url.String(),
		Host:    authority,
		Headers: http1.RedactHeaders(r.Header),
	}
	if x.grpc {
		x.req.GRPC = grpcCall(r.URL.Path)
	} else if o, ok := c.sink.(http1.Observer); ok {
		x.obs = o.Observe(id, r.Method, x.url.RequestURI(), authority, r.Header)
	}
	return x
}

// observer returns the exchange's observer, nil when there is none or the
// exchange already ended.
func (x *exchange) observer() http1.Exchange {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.obs
}

// requestBytes notes bytes of the request body on their way upstream.
func (x *exchange) requestBytes(p []byte) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.req == nil {
		return // recorded already: a response came first
	}
	x.reqLen += int64(len(p))
	if x.grpc {
		x.reqMsg.feed(p)
		return
	}
	if x.metaOnly {
		return
	}
	if room := x.c.r.opts.BodyCap - int64(len(x.reqBuf)); room > 0 {
		x.reqBuf = append(x.reqBuf, p[:min(room, int64(len(p)))]...)
	}
}

// requestEnded notes the end of the request body and records the request.
func (x *exchange) requestEnded() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.reqOpen = false
	x.recordRequest()
}

// finishRequest records the request, once: when its body ended, when the
// first response record is due (a body still flowing then is cut short in
// the record: full-duplex streams), or when the stream ended.
func (x *exchange) finishRequest() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.recordRequest()
}

// recordRequest is finishRequest with mu held.
func (x *exchange) recordRequest() {
	if x.req == nil {
		return
	}
	rec := x.req
	x.req = nil
	x.reqEnd = time.Now()
	c := x.c
	var buf []byte
	if !x.grpc {
		buf = x.reqBuf
	}
	b, err := http1.RecordFiltered(c.ctx, c.sink, x.method, x.url.RequestURI(), false, buf, x.reqLen, c.r.opts.InlineLimit)
	if err != nil {
		c.recordFailed(err)
	}
	if x.reqOpen {
		if b == nil {
			b = &event.Body{}
		}
		b.Truncated = true
	}
	rec.Body = b
	if x.grpc {
		x.reqMsg.fill(rec.GRPC)
	}
	if err := c.sink.Request(c.ctx, x.start, rec); err != nil {
		c.recordFailed(err)
	}
	if x.obs != nil {
		x.obs.RequestBody(c.ctx, x.start, x.reqBuf, x.reqLen)
	}
	x.reqBuf = nil
	c.count(1, 0)
}

// record records a response that carries no relayed body (an error, a
// refusal), at t.
func (x *exchange) record(rec *event.HTTPResponse, t time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.recordRequest()
	x.emitResponse(rec, t, t)
}

// emitResponse fills in the stream's fields and records rec. mu is held.
func (x *exchange) emitResponse(rec *event.HTTPResponse, headersAt, end time.Time) {
	x.recordRequest()
	rec.Stream = x.id
	rec.Proto = "HTTP/2.0"
	if lat := headersAt.Sub(x.reqEnd); lat > 0 && !x.reqEnd.IsZero() {
		rec.Latency = lat
	}
	if rec.Streamed != event.StreamedHeaders {
		rec.Duration = end.Sub(x.start)
	}
	if err := x.c.sink.Response(x.c.ctx, headersAt, rec); err != nil {
		x.c.recordFailed(err)
	}
	if rec.Streamed != event.StreamedHeaders {
		x.c.count(0, 1)
		if x.obs != nil {
			x.obs.End(x.c.ctx, end, rec.Error)
			x.obs = nil
		}
	}
}

// respBody records a response body as it is relayed: buffered (up to
// BodyCap) into one record, or, once the response is known or found to
// be a stream, as chunks. Its fields are guarded by x.mu.
type respBody struct {
	x         *exchange
	headersAt time.Time
	status    int
	headers   map[string][]string

	streaming bool
	done      bool
	size      int64
	buf       []byte // buffered mode: the first BodyCap bytes
	msgs      grpcFrames

	// Streaming mode: the chunk being gathered, its size (content beyond
	// StreamCap is counted, not kept) and when its first byte came.
	pend     []byte
	pendSize int64
	pendAt   time.Time
	recorded int64
	timer    *time.Timer
}

// startResponse begins the record of resp, whose headers came at
// headersAt. atOnce streams it from the start; a body of unknown length
// that lasts past FlushInterval becomes a stream then.
func (x *exchange) startResponse(resp *http.Response, headersAt time.Time, atOnce bool) *respBody {
	rb := &respBody{
		x:         x,
		headersAt: headersAt,
		status:    resp.StatusCode,
		headers:   http1.RedactHeaders(resp.Header),
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	switch {
	case atOnce:
		rb.goStreaming()
	case resp.ContentLength < 0:
		rb.timer = time.AfterFunc(x.c.r.opts.FlushInterval, rb.lasted)
	}
	return rb
}

// lasted turns a response still flowing after FlushInterval into a stream.
func (rb *respBody) lasted() {
	rb.x.mu.Lock()
	defer rb.x.mu.Unlock()
	if rb.done || rb.streaming {
		return
	}
	rb.timer = nil
	rb.goStreaming()
}

// goStreaming records the headers and passes what was buffered on as
// chunks. mu is held.
func (rb *respBody) goStreaming() {
	rb.streaming = true
	rb.x.emitResponse(&event.HTTPResponse{
		Status:   rb.status,
		Headers:  rb.headers,
		Streamed: event.StreamedHeaders,
	}, rb.headersAt, rb.headersAt)
	buf, size := rb.buf, rb.size
	rb.buf, rb.size = nil, 0
	if size > 0 {
		rb.pendAt = rb.headersAt
	}
	rb.add(buf)
	if rest := size - int64(len(buf)); rest > 0 {
		// Bytes past BodyCap were not kept: count them as such.
		rb.addUnkept(rest)
	}
	rb.arm()
}

// write notes bytes of the body that reached the client.
func (rb *respBody) write(p []byte) {
	rb.x.mu.Lock()
	defer rb.x.mu.Unlock()
	if rb.done {
		return
	}
	if rb.x.grpc {
		rb.msgs.feed(p)
	}
	if !rb.streaming {
		rb.size += int64(len(p))
		if rb.x.grpc || rb.x.metaOnly {
			return
		}
		if room := rb.x.c.r.opts.BodyCap - int64(len(rb.buf)); room > 0 {
			rb.buf = append(rb.buf, p[:min(room, int64(len(p)))]...)
		}
		return
	}
	if rb.pendSize == 0 {
		rb.pendAt = time.Now()
	}
	rb.add(p)
	rb.arm()
}

// add appends p to the chunks, recording each full one. mu is held.
func (rb *respBody) add(p []byte) {
	opts := &rb.x.c.r.opts
	for len(p) > 0 {
		k := min(int64(len(p)), int64(opts.ChunkSize)-rb.pendSize)
		keep := int64(0)
		if !rb.x.grpc && !rb.x.metaOnly {
			keep = max(0, min(k, opts.StreamCap-rb.recorded-int64(len(rb.pend))))
		}
		rb.pend = append(rb.pend, p[:keep]...)
		rb.pendSize += k
		rb.size += k
		p = p[k:]
		if rb.pendSize >= int64(opts.ChunkSize) {
			rb.flush()
		}
	}
}

// addUnkept counts n body bytes whose content is gone. mu is held.
func (rb *respBody) addUnkept(n int64) {
	chunk := int64(rb.x.c.r.opts.ChunkSize)
	for n > 0 {
		k := min(n, chunk-rb.pendSize)
		rb.pendSize += k
		rb.size += k
		n -= k
		if rb.pendSize >= chunk {
			rb.flush()
		}
	}
}

// arm schedules the recording of a partial chunk. mu is held.
func (rb *respBody) arm() {
	if rb.pendSize == 0 || rb.timer != nil {
		return
	}
	rb.timer = time.AfterFunc(rb.x.c.r.opts.FlushInterval, func() {
		rb.x.mu.Lock()
		defer rb.x.mu.Unlock()
		rb.timer = nil
		if !rb.done {
			rb.flush()
		}
	})
}

// flush records the gathered chunk as a stream.data event. mu is held.
func (rb *respBody) flush() {
	if rb.pendSize == 0 {
		return
	}
	c := rb.x.c
	b, err := http1.RecordFiltered(c.ctx, c.sink, rb.x.method, rb.x.url.RequestURI(), true, rb.pend, rb.pendSize, c.r.opts.InlineLimit)
	if err != nil {
		c.recordFailed(err)
	}
	if b != nil {
		rb.recorded += b.Recorded
	}
	d := &event.StreamData{Stream: strconv.FormatUint(rb.x.id, 10), Channel: "data", Data: b}
	if err := c.sink.StreamData(c.ctx, rb.pendAt, d); err != nil {
		c.recordFailed(err)
	}
	rb.pend = nil
	rb.pendSize = 0
}

// finish records the end of the response; errMsg says why it did not
// complete, if it did not.
func (rb *respBody) finish(resp *http.Response, errMsg string) {
	x := rb.x
	x.mu.Lock()
	defer x.mu.Unlock()
	rb.done = true
	if rb.timer != nil {
		rb.timer.Stop()
		rb.timer = nil
	}
	end := time.Now()
	rec := &event.HTTPResponse{
		Status:   rb.status,
		Headers:  rb.headers,
		Trailers: http1.RedactHeaders(resp.Trailer),
		Error:    errMsg,
	}
	if x.grpc {
		rec.GRPC = grpcStatus(resp)
		rb.msgs.fill(rec.GRPC)
	}
	c := x.c
	if rb.streaming {
		rb.flush()
		rec.Streamed = event.StreamedEnd
		if rb.size > 0 {
			rec.Body = &event.Body{Size: rb.size, Recorded: rb.recorded, Truncated: rb.recorded < rb.size}
		}
	} else {
		b, err := http1.RecordFiltered(c.ctx, c.sink, x.method, x.url.RequestURI(), true, rb.buf, rb.size, c.r.opts.InlineLimit)
		if err != nil {
			c.recordFailed(err)
		}
		rec.Body = b
		rb.buf = nil
	}
	x.emitResponse(rec, rb.headersAt, end)
}
