package http1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

// Refusal is an answer given to the client instead of forwarding a request.
type Refusal struct {
	Status      int
	ContentType string
	Body        []byte
}

// Verdict is a RequestHook's answer about one request.
type Verdict struct {
	// Refusal, when set, answers the client instead of forwarding.
	Refusal *Refusal
	// MetadataOnly records the exchange without its bodies (their sizes
	// stay).
	MetadataOnly bool
	// Changed names the headers (canonical names) the hook set or deleted
	// in req.Header. HTTP/1 rewrites only their lines before forwarding:
	// a change to a header not named here is not forwarded.
	Changed []string
}

// RequestHook is called for every request before any byte of it is
// forwarded. stream is the request's number in its record (its index on
// the connection for HTTP/1, its stream id for HTTP/2). The hook may
// change req.Header (to swap a credential placeholder, say) and name what
// it changed in Verdict.Changed (HTTP/1 rewrites only those header lines);
// it must not read req.Body, and other changes are ignored. The request is recorded as the client sent it,
// credentials redacted. An error answers 502. The hook
// may block (a request held for approval); ctx is the connection's.
type RequestHook func(ctx context.Context, stream uint64, req *http.Request) (Verdict, error)

// ErrRefused is Stats.Err of a connection the sidecar closed after it
// refused one of its requests (a refusal ends the connection: whatever the
// client pipelined behind it is not forwarded).
var ErrRefused = errors.New("request refused before forwarding")

// errBadHeader is returned when a hook put a value into a header that
// cannot be sent.
var errBadHeader = errors.New("hook set an invalid header value")

// consumed is how many held bytes the parser br has consumed.
func (t *tee) consumed(br *bufio.Reader) int {
	return len(t.held) - br.Buffered()
}

// release forwards the first n held bytes, after a head waiting in pre.
func (t *tee) release(n int) error {
	return t.forward(t.heldAt + int64(max(n, 0)))
}

// closeHeld passes the client's half-close on once nothing is held.
func (t *tee) closeHeld() error {
	if !t.hold || !t.eof {
		return nil
	}
	if err := t.release(len(t.held)); err != nil {
		return err
	}
	return t.closeWrite()
}

func (t *tee) closeWrite() error {
	if err := t.dst.CloseWrite(); err != nil {
		t.err = fmt.Errorf("%w: close write: %w", errRelay, err)
		return t.err
	}
	return nil
}

// gateRequest runs the hook, if any, on a parsed request whose head is
// held, and forwards the head (rewritten if the hook changed headers or
// the upstream connection is kept) when the hook allows it. It reports whether the request goes on; when it does not,
// the client has been answered and the connection must end.
func (c *conn) gateRequest(x *exchange, prev *exchange, req *http.Request) (bool, error) {
	headLen := c.up.consumed(c.upBuf)
	var v Verdict
	var err error
	if c.r.opts.RequestHook != nil {
		v, err = c.r.opts.RequestHook(c.ctx, x.stream, req)
	}
	if err == nil && v.Refusal == nil {
		x.metaOnly = v.MetadataOnly
		head := c.up.held[:headLen]
		rewritten := false
		if len(v.Changed) > 0 {
			head, err = rewriteHead(head, req.Header, v.Changed)
			rewritten = true
		}
		if changed, h := c.keepUpstream(x, req); err == nil && changed != nil {
			head, err = rewriteHead(head, h, changed)
			rewritten = true
		}
		if err == nil {
			switch {
			case req.Body != nil && req.Body != http.NoBody && c.upBuf.Buffered() > 0:
				// The body's first bytes are here: the head goes with
				// them (copyBodyGated releases), in one write.
				if rewritten {
					c.up.replaceHead(headLen, head)
				}
			default:
				if werr := c.up.send(head); werr != nil {
					return false, werr
				}
				c.up.drop(headLen)
			}
			return true, nil
		}
	}
	f := v.Refusal
	if err != nil {
		msg := "chaperone: request hook: " + err.Error() + "\n"
		f = &Refusal{Status: http.StatusBadGateway, ContentType: "text/plain; charset=utf-8", Body: []byte(msg)}
	}
	x.metaOnly = v.MetadataOnly
	c.refuse(x, prev, req, f)
	return false, ErrRefused
}

// refuse answers x with f after every earlier response went to the client,
// records the exchange, and leaves the connection to be closed: the
// request's body, if any, is never read.
func (c *conn) refuse(x *exchange, prev *exchange, req *http.Request, f *Refusal) {
	if prev != nil {
		select {
		case <-prev.answered:
		case <-c.upstreamDone:
		case <-c.ctx.Done():
		}
	}
	status := f.Status
	if status < 100 || status > 999 {
		status = http.StatusForbidden
	}
	h := http.Header{}
	if f.ContentType != "" {
		h.Set("Content-Type", f.ContentType)
	}
	h.Set("Content-Length", strconv.Itoa(len(f.Body)))
	h.Set("Connection", "close")
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %03d %s\r\n", status, http.StatusText(status))
	_ = h.Write(&b)
	b.WriteString("\r\n")
	b.Write(f.Body)
	_, werr := c.pair.Client.Write(b.Bytes())
	if werr == nil {
		lingerClose(c.pair.Client)
	}

	// The request is recorded without its body, which was never read.
	rec := requestRecord(x, req)
	if req.ContentLength > 0 || len(req.TransferEncoding) > 0 {
		rec.Body = &event.Body{Size: max(req.ContentLength, 0), Truncated: true}
	}
	c.afterResponse(prev)
	if err := c.sink.Request(c.ctx, x.start, rec); err != nil {
		c.recordFailed(err)
	}
	resp := &event.HTTPResponse{
		Stream:   x.stream,
		Proto:    "HTTP/1.1",
		Status:   status,
		Headers:  RedactHeaders(h),
		Error:    "refused before forwarding",
		Duration: time.Since(x.start),
	}
	if !x.metaOnly {
		body, err := RecordBody(c.ctx, c.sink.Blob, capped(f.Body, c.r.opts.BodyCap), int64(len(f.Body)), c.r.opts.InlineLimit)
		if err != nil {
			c.recordFailed(err)
		}
		resp.Body = body
	} else if len(f.Body) > 0 {
		resp.Body = &event.Body{Size: int64(len(f.Body)), Truncated: true}
	}
	if err := c.sink.Response(c.ctx, time.Now(), resp); err != nil {
		c.recordFailed(err)
	}
	c.mu.Lock()
	c.stats.Requests++
	c.stats.Responses++
	c.mu.Unlock()
}

func capped(b []byte, n int64) []byte {
	return append([]byte(nil), b[:min(int64(len(b)), n)]...)
}

// lingerBytes and lingerTime bound what is read from a refused client
// before its connection is closed.
const (
	lingerBytes = 1 << 20
	lingerTime  = time.Second
)

// lingerClose half-closes the client after the refusal was written and
// reads (and drops) what it still sends for a moment, so that a client
// still sending its body reads the refusal instead of a reset.
func lingerClose(cl Conn) {
	_ = cl.CloseWrite()
	if d, ok := cl.(interface{ SetReadDeadline(time.Time) error }); ok {
		_ = d.SetReadDeadline(time.Now().Add(lingerTime))
		_, _ = io.Copy(io.Discard, io.LimitReader(cl, lingerBytes))
	}
}

// rewriteHead returns head (a request line, header lines and the blank
// line, as the client sent them) with the lines of the changed headers
// replaced by their values in h. Every other byte stays as sent.
func rewriteHead(head []byte, h http.Header, changed []string) ([]byte, error) {
	lines := bytes.SplitAfter(head, []byte("\n"))
	out := make([]byte, 0, len(head)+128)
	skipping := false
	for i, l := range lines {
		if len(l) == 0 {
			continue // after the final newline
		}
		trimmed := bytes.TrimRight(l, "\r\n")
		switch {
		case i == 0:
			out = append(out, l...)
			continue
		case len(trimmed) == 0:
			// The blank line: the new values go just before it.
			for _, name := range changed {
				for _, v := range h[name] {
					if strings.ContainsAny(v, "\r\n\x00") || !validHeaderName(name) {
						return nil, fmt.Errorf("%w: %s", errBadHeader, name)
					}
					out = append(out, name...)
					out = append(out, ": "...)
					out = append(out, v...)
					out = append(out, "\r\n"...)
				}
			}
			out = append(out, l...)
			continue
		case trimmed[0] == ' ' || trimmed[0] == '\t':
			// A continuation of the previous header line.
			if !skipping {
				out = append(out, l...)
			}
			continue
		}
		name, _, _ := bytes.Cut(trimmed, []byte(":"))
		skipping = slices.Contains(changed, http.CanonicalHeaderKey(string(bytes.TrimSpace(name))))
		if !skipping {
			out = append(out, l...)
		}
	}
	return out, nil
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == ':' {
			return false
		}
	}
	return true
}
