package http1

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"sync"
	"unicode/utf8"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

// Redacted replaces the values of credential headers in records.
const Redacted = "[REDACTED]"

// redactedHeaders never have their values recorded. The keys are in
// http.CanonicalHeaderKey form, as ReadRequest and ReadResponse store them.
var redactedHeaders = map[string]bool{
	"Authorization":       true,
	"Proxy-Authorization": true,
	"Cookie":              true,
	"Set-Cookie":          true,
}

// RedactHeaders returns a copy of h for a record, with the values of
// Authorization, Proxy-Authorization, Cookie and Set-Cookie replaced by
// Redacted.
func RedactHeaders(h http.Header) map[string][]string {
	if len(h) == 0 {
		return nil
	}
	out := make(map[string][]string, len(h))
	for k, vs := range h {
		if redactedHeaders[http.CanonicalHeaderKey(k)] {
			r := make([]string, len(vs))
			for i := range r {
				r[i] = Redacted
			}
			out[k] = r
			continue
		}
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// redactOwned is RedactHeaders for a header the caller owns and no longer
// needs: it redacts the values in place and returns h itself, sparing the
// copy. ReadResponse's header is one; nothing reads it after the record.
func redactOwned(h http.Header) map[string][]string {
	if len(h) == 0 {
		return nil
	}
	for k, vs := range h {
		if redactedHeaders[http.CanonicalHeaderKey(k)] {
			for i := range vs {
				vs[i] = Redacted
			}
		}
	}
	return h
}

// capture keeps the first limit bytes written to it and counts them all.
type capture struct {
	limit int64
	buf   []byte
	size  int64
}

func (c *capture) Write(p []byte) (int, error) {
	c.size += int64(len(p))
	if room := c.limit - int64(len(c.buf)); room > 0 {
		c.buf = append(c.buf, p[:min(room, int64(len(p)))]...)
	}
	return len(p), nil
}

// copyBufs holds the buffers that bodies are read through into captures,
// so that a body does not cost a fresh 32 KiB buffer.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyInto reads src to its end into c through a pooled buffer.
func copyInto(c *capture, src io.Reader) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	return io.CopyBuffer(c, src, *bp)
}

// BlobRef names data by content: "sha256:<hex>".
func BlobRef(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// body turns a capture into a record body, filtered: see RecordBody and
// BodyFilter.
func (r *Recorder) body(ctx context.Context, sink Sink, c *capture, method, target string, response bool) (*event.Body, error) {
	return RecordFiltered(ctx, sink, method, target, response, c.buf, c.size, r.opts.InlineLimit)
}

// BodyFilter is implemented by a Sink that rewrites bodies before they are
// recorded (to mask Kubernetes Secrets, say). What the peers exchange is
// never changed; only the record is.
type BodyFilter interface {
	// FilterBody returns what to record of recorded, the first bytes of
	// the request body (response false) or of the response body of the
	// request method target (its request-target: "/path?query", or an
	// absolute URL). Streamed response bodies are filtered chunk by chunk.
	FilterBody(method, target string, response bool, recorded []byte) []byte
}

// RecordFiltered is RecordBody after sink's BodyFilter, if it has one: the
// record holds the filtered bytes, and stays truncated only when the
// original recording was.
func RecordFiltered(ctx context.Context, sink Sink, method, target string, response bool, recorded []byte, size int64, inline int) (*event.Body, error) {
	f, ok := sink.(BodyFilter)
	if !ok || len(recorded) == 0 {
		return RecordBody(ctx, sink.Blob, recorded, size, inline)
	}
	truncated := int64(len(recorded)) < size
	out := f.FilterBody(method, target, response, recorded)
	b, err := RecordBody(ctx, sink.Blob, out, size, inline)
	if b != nil && err == nil {
		b.Truncated = truncated
	}
	return b, err
}

// RecordBody turns the recorded first bytes of a body of size bytes into a
// record body. Bodies up to inline bytes are inline (Text when valid UTF-8,
// else B64); larger recorded bytes go to blob as a blob first and the body
// names it. An empty body is nil.
func RecordBody(ctx context.Context, blob func(ctx context.Context, ref string, data []byte) error, recorded []byte, size int64, inline int) (*event.Body, error) {
	if size == 0 {
		return nil, nil
	}
	b := &event.Body{
		Size:      size,
		Recorded:  int64(len(recorded)),
		Truncated: int64(len(recorded)) < size,
	}
	switch {
	case len(recorded) == 0:
	case len(recorded) <= inline && utf8.Valid(recorded):
		b.Text = string(recorded)
	case len(recorded) <= inline:
		b.B64 = recorded
	default:
		ref := BlobRef(recorded)
		if err := blob(ctx, ref, recorded); err != nil {
			b.Recorded = 0
			b.Truncated = true
			return b, err
		}
		b.Ref = ref
	}
	return b, nil
}
