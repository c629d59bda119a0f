package http1

import (
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Rewriter is implemented by a Sink that rewrites response bodies on
// their way to the client (inline masking). On a connection whose sink
// rewrites, the upstream's bytes are parsed before they are relayed:
// responses that are not rewritten still reach the client byte for byte,
// each piece as soon as the parser consumed it.
type Rewriter interface {
	// RewritesResponses reports whether responses of this connection may
	// be rewritten; false keeps the plain relay.
	RewritesResponses() bool
	// RewriteResponse returns the rewriter of one response's body, or nil
	// to relay the response unchanged.
	RewriteResponse(method, target string, status int, h http.Header) BodyRewriter
}

// BodyRewriter rewrites one response body.
type BodyRewriter interface {
	// Write takes the next bytes of the (decoded) body and returns what
	// to send now; it may hold some back.
	Write(p []byte) []byte
	// Close returns the rest at the end of the body.
	Close() []byte
	// Stream says the bytes must go out as they come. While it is false
	// the rewritten body is gathered, to be sent with a Content-Length.
	Stream() bool
}

// Rewritable reports whether a response to method with status may carry
// a body to rewrite.
func Rewritable(method string, status int) bool {
	return method != http.MethodHead && status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// forward relays the held bytes up to stream offset to, after a head
// waiting in pre.
func (t *tee) forward(to int64) error {
	n := max(int(to-t.heldAt), 0)
	if n == 0 && len(t.pre) == 0 {
		return nil
	}
	p := t.held[:n]
	if len(t.pre) > 0 {
		p = append(t.pre, p...)
		t.pre = nil
	}
	err := t.send(p)
	t.drop(n)
	return err
}

// replaceHead puts head, a rewritten message head, in place of the first
// n held bytes (the head as read): it goes out with the next bytes
// forwarded, in the same write.
func (t *tee) replaceHead(n int, head []byte) {
	t.drop(n)
	t.pre = head
}

// skip drops the held bytes up to stream offset to: they were rewritten.
func (t *tee) skip(to int64) {
	if n := int(to - t.heldAt); n > 0 {
		t.drop(n)
	}
}

func (t *tee) drop(n int) {
	t.heldAt += int64(n)
	if n == len(t.held) {
		t.held = t.held[:0]
		return
	}
	t.held = append(t.held[:0], t.held[n:]...)
}

// send writes p to the other peer.
func (t *tee) send(p []byte) error {
	if len(p) == 0 || t.err != nil {
		return t.err
	}
	w, err := t.dst.Write(p)
	t.n += int64(w)
	if err != nil {
		t.err = fmt.Errorf("%w: %w", errRelay, err)
	}
	return t.err
}

// unhold relays everything held and whatever comes later as it comes,
// passing a half-close on that was kept back.
func (t *tee) unhold() error {
	if !t.hold {
		return t.err
	}
	t.hold = false
	err := t.send(append(t.pre, t.held...))
	t.pre = nil
	t.heldAt += int64(len(t.held))
	t.held = nil
	if err == nil && t.eof {
		if cerr := t.dst.CloseWrite(); cerr != nil {
			t.err = fmt.Errorf("%w: close write: %w", errRelay, cerr)
		}
	}
	return t.err
}

// consumed is the stream offset up to which the parser has read.
func (c *conn) consumed() int64 { return c.down.read - int64(c.downBuf.Buffered()) }

// forwarding relays, after every read of a body, the raw bytes the parser
// consumed so far: chunk framing and all.
type forwarding struct {
	r io.Reader
	c *conn
}

func (f forwarding) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if ferr := f.c.down.forward(f.c.consumed()); ferr != nil {
		return n, ferr
	}
	return n, err
}

// rewrite sends resp to the client with its body rewritten by rw, after
// feeding the upstream's bytes to w (the record and the observer);
// closing adds "Connection: close" (see Pair.Reuse). A
// gzip body is decoded for rw and sent decoded. The head goes at once
// when rw streams (chunked), else with the rewritten body's length.
func (c *conn) rewrite(w io.Writer, resp *http.Response, rw BodyRewriter, proto11, closing bool) error {
	body := io.Reader(io.TeeReader(resp.Body, w))
	h := resp.Header.Clone()
	if enc := strings.ToLower(strings.TrimSpace(h.Get("Content-Encoding"))); enc == "gzip" || enc == "x-gzip" {
		zr, err := gzip.NewReader(body)
		if err != nil {
			return fmt.Errorf("gzip response: %w", err)
		}
		body = zr
		h.Del("Content-Encoding")
	}
	h.Del("Content-Length")
	h.Del("Transfer-Encoding")
	if closing {
		h.Set("Connection", "close")
	}
	out := &headWriter{c: c, resp: resp, h: h, chunked: proto11}
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if werr := out.write(rw.Write(buf[:n]), rw.Stream()); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("response body: %w", err)
		}
	}
	return out.end(rw.Close(), resp.Trailer)
}

// headWriter writes a rewritten response: the head once the framing is
// known, then the body, gathered or chunked.
type headWriter struct {
	c       *conn
	resp    *http.Response
	h       http.Header
	chunked bool // the client speaks HTTP/1.1: chunks are possible
	started bool
	gather  []byte
}

func (hw *headWriter) head(length int) error {
	hw.started = true
	if length >= 0 {
		hw.h.Set("Content-Length", strconv.Itoa(length))
		hw.h.Del("Trailer")
	} else if hw.chunked {
		hw.h.Set("Transfer-Encoding", "chunked")
	} else {
		hw.h.Set("Connection", "close")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/%d.%d %s\r\n", hw.resp.ProtoMajor, hw.resp.ProtoMinor, hw.resp.Status)
	_ = hw.h.Write(&b)
	b.WriteString("\r\n")
	return hw.c.down.send([]byte(b.String()))
}

func (hw *headWriter) write(p []byte, stream bool) error {
	if !hw.started && (!stream || !hw.chunked) {
		hw.gather = append(hw.gather, p...)
		return nil
	}
	if !hw.started {
		if err := hw.head(-1); err != nil {
			return err
		}
		p = append(hw.gather, p...)
		hw.gather = nil
	}
	return hw.chunk(p)
}

func (hw *headWriter) chunk(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if !hw.chunked {
		return hw.c.down.send(p)
	}
	var b []byte
	b = fmt.Appendf(b, "%x\r\n", len(p))
	b = append(b, p...)
	b = append(b, "\r\n"...)
	return hw.c.down.send(b)
}

func (hw *headWriter) end(rest []byte, trailer http.Header) error {
	if !hw.started {
		body := append(hw.gather, rest...)
		if err := hw.head(len(body)); err != nil {
			return err
		}
		return hw.c.down.send(body)
	}
	if err := hw.chunk(rest); err != nil {
		return err
	}
	if !hw.chunked {
		return nil
	}
	var b strings.Builder
	b.WriteString("0\r\n")
	_ = trailer.Write(&b)
	b.WriteString("\r\n")
	return hw.c.down.send([]byte(b.String()))
}
