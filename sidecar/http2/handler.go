package http2

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/sidecar/http1"
)

// bufPool holds the relay buffers of response bodies.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// ServeHTTP forwards one client stream upstream and records it.
func (c *conn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.handlers.Add(1)
	defer c.handlers.Done()

	x := c.newExchange(w, r)
	defer x.finishRequest() // in every case the request is recorded

	out := c.outgoing(r, x)
	if hook := c.r.opts.RequestHook; hook != nil {
		v, err := hook(r.Context(), x.id, out)
		x.setMetaOnly(v.MetadataOnly)
		switch {
		case err != nil:
			c.fail(w, x, http.StatusBadGateway, "request hook: "+err.Error())
			return
		case v.Refusal != nil:
			c.refuse(w, x, v.Refusal)
			return
		}
	}
	select {
	case <-c.upDead:
		c.fail(w, x, http.StatusBadGateway, "upstream: connection lost")
		return
	default:
	}

	resp, err := c.cc.RoundTrip(out)
	if err != nil {
		if r.Context().Err() != nil {
			x.finishRequest()
			x.record(&event.HTTPResponse{Error: "client cancelled the stream"}, time.Now())
			return
		}
		c.fail(w, x, http.StatusBadGateway, "upstream: "+err.Error())
		return
	}
	defer resp.Body.Close()
	c.relay(w, r, x, resp)
}

// outgoing builds the upstream request for r; its body is recorded as it
// is read.
func (c *conn) outgoing(r *http.Request, x *exchange) *http.Request {
	out := &http.Request{
		Method:        r.Method,
		URL:           x.url,
		Header:        r.Header.Clone(),
		Host:          x.authority,
		ContentLength: r.ContentLength,
		// The server fills r.Trailer when the body ends, before the
		// transport reads it to send the trailers on.
		Trailer: r.Trailer,
		Body:    http.NoBody,
	}
	if out.Header == nil {
		out.Header = http.Header{}
	}
	if r.Body != nil && r.Body != http.NoBody {
		x.reqOpen = true
		out.Body = &requestBody{rc: r.Body, x: x}
	} else {
		x.finishRequest()
	}
	return out.WithContext(r.Context())
}

// fail answers the client with status and records the exchange as failed.
func (c *conn) fail(w http.ResponseWriter, x *exchange, status int, msg string) {
	c.r.opts.Logger.Debug("http2 stream failed", "stream", x.id, "url", x.url.String(), "err", msg)
	x.finishRequest()
	body := "chaperone: " + msg + "\n"
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body) //nolint:gosec // text/plain with the proxy's own message, never rendered as HTML
	x.record(&event.HTTPResponse{Status: status, Error: msg}, time.Now())
}

// refuse answers the client with a hook's refusal.
func (c *conn) refuse(w http.ResponseWriter, x *exchange, f *Refusal) {
	x.finishRequest()
	status := f.Status
	if status < 100 || status > 999 {
		status = http.StatusForbidden
	}
	if f.ContentType != "" {
		w.Header().Set("Content-Type", f.ContentType)
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(f.Body)))
	w.WriteHeader(status)
	_, _ = w.Write(f.Body)
	rec := &event.HTTPResponse{
		Status:  status,
		Headers: http1.RedactHeaders(w.Header()),
		Error:   "refused before forwarding",
	}
	keep := c.r.opts.BodyCap
	if x.isMetaOnly() {
		keep = 0
	}
	b, err := http1.RecordBody(c.ctx, c.sink.Blob, capped(f.Body, keep), int64(len(f.Body)), c.r.opts.InlineLimit)
	if err != nil {
		c.recordFailed(err)
	}
	rec.Body = b
	x.record(rec, time.Now())
}

func capped(b []byte, n int64) []byte {
	return append([]byte(nil), b[:min(int64(len(b)), n)]...)
}

// relay copies the upstream response to the client, flushing every read,
// and records it.
func (c *conn) relay(w http.ResponseWriter, r *http.Request, x *exchange, resp *http.Response) {
	headersAt := time.Now()
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	if rr, ok := c.sink.(http1.Rewriter); ok && rr.RewritesResponses() && http1.Rewritable(r.Method, resp.StatusCode) {
		if rw := rr.RewriteResponse(r.Method, x.url.RequestURI(), resp.StatusCode, resp.Header); rw != nil {
			c.relayRewritten(w, r, x, resp, rw, headersAt)
			return
		}
	}
	w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(w)
	_ = rc.Flush()

	obs := x.observer()
	if obs != nil {
		obs.ResponseHead(resp.StatusCode, resp.Header)
	}
	rb := x.startResponse(resp, headersAt, streamsAtOnce(r, resp))
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var rerr, werr error
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr = w.Write(buf[:n]); werr == nil {
				werr = rc.Flush()
			}
			// Recorded after the client has it: recording never delays.
			if obs != nil {
				obs.ResponseBody(buf[:n])
			}
			rb.write(buf[:n])
			if werr != nil {
				break
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				rerr = err
			}
			break
		}
	}
	for k, vs := range resp.Trailer {
		w.Header()[http.TrailerPrefix+k] = vs
	}
	endResponse(r, rb, resp, rerr, werr)
}

// endResponse records the end of a relayed response body: rerr is the
// upstream's read error, werr the client's write error. When the upstream
// body broke while the client was still there, the client must not take
// a cut body for a whole one: its stream is reset (the server recovers
// this sentinel without logging).
func endResponse(r *http.Request, rb *respBody, resp *http.Response, rerr, werr error) {
	const cancelled = "client cancelled the stream"
	var msg string
	switch {
	case r.Context().Err() != nil || werr != nil:
		msg = cancelled
	case rerr != nil:
		msg = "upstream body: " + rerr.Error()
	}
	rb.finish(resp, msg)
	if rerr != nil && msg != cancelled {
		panic(http.ErrAbortHandler)
	}
}

// streamsAtOnce reports whether a response is known to be a stream before
// its first byte: server-sent events, Kubernetes watches, log follows.
func streamsAtOnce(r *http.Request, resp *http.Response) bool {
	ct := resp.Header.Get("Content-Type")
	if strings.HasPrefix(strings.ToLower(ct), "text/event-stream") {
		return true
	}
	q := r.URL.Query()
	for _, k := range []string{"watch", "follow"} {
		if v := q.Get(k); v == "true" || v == "1" {
			return true
		}
	}
	return false
}

// requestURL is what a request is forwarded to and recorded as.
func requestURL(scheme, authority string, r *http.Request) *url.URL {
	u := &url.URL{Scheme: scheme, Host: authority}
	if r.Method == http.MethodConnect {
		return u
	}
	u.Path, u.RawPath, u.RawQuery = r.URL.Path, r.URL.RawPath, r.URL.RawQuery
	return u
}

// requestBody records a request body as the transport reads it. The
// request is recorded when the body ends (or fails, or is closed).
type requestBody struct {
	rc io.ReadCloser
	x  *exchange
}

func (b *requestBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.x.requestBytes(p[:n])
	}
	if err != nil {
		b.x.requestEnded()
	}
	return n, err
}

func (b *requestBody) Close() error {
	err := b.rc.Close()
	b.x.requestEnded()
	return err
}
