package http2

import (
	"compress/gzip"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/chaperone-dev/chaperone/sidecar/http1"
)

// tap shows every byte read from r to fn: the upstream's body bytes go to
// the record and the observer before they are rewritten.
type tap struct {
	r  io.Reader
	fn func([]byte)
}

func (t tap) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		t.fn(p[:n])
	}
	return n, err
}

// relayRewritten is relay for a body rewritten by rw (inline masking): a
// gzip body is decoded and sent decoded; the head goes at once when rw
// streams, else with the rewritten body's length.
func (c *conn) relayRewritten(w http.ResponseWriter, r *http.Request, x *exchange, resp *http.Response, rw http1.BodyRewriter, headersAt time.Time) {
	h := w.Header()
	h.Del("Content-Length")
	obs := x.observer()
	if obs != nil {
		obs.ResponseHead(resp.StatusCode, resp.Header)
	}
	rb := x.startResponse(resp, headersAt, streamsAtOnce(r, resp))
	var body io.Reader = tap{r: resp.Body, fn: func(p []byte) {
		if obs != nil {
			obs.ResponseBody(p)
		}
		rb.write(p)
	}}
	var rerr, werr error
	if enc := strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Encoding"))); enc == "gzip" || enc == "x-gzip" {
		zr, err := gzip.NewReader(body)
		if err != nil {
			rerr = err
			body = http.NoBody
		} else {
			body = zr
		}
		h.Del("Content-Encoding")
	}
	rc := http.NewResponseController(w)
	started := false
	var gather []byte
	start := func(length int) {
		if length >= 0 {
			h.Set("Content-Length", strconv.Itoa(length))
		}
		w.WriteHeader(resp.StatusCode)
		started = true
	}
	send := func(p []byte) error {
		if len(p) == 0 {
			return rc.Flush()
		}
		_, err := w.Write(p) //nolint:gosec // the upstream's own body, masked, relayed with its own content type
		if err == nil {
			err = rc.Flush()
		}
		return err
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for rerr == nil {
		n, err := body.Read(buf)
		if n > 0 {
			out := rw.Write(buf[:n])
			switch {
			case !started && !rw.Stream():
				gather = append(gather, out...)
			case !started:
				start(-1)
				werr = send(append(gather, out...))
				gather = nil
			default:
				werr = send(out)
			}
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
	if rerr == nil && werr == nil {
		rest := rw.Close()
		if !started {
			all := append(gather, rest...)
			start(len(all))
			werr = send(all)
		} else {
			werr = send(rest)
		}
		for k, vs := range resp.Trailer {
			w.Header()[http.TrailerPrefix+k] = vs
		}
	}
	// Part of a rewritten body may have gone out: a broken upstream resets
	// the stream.
	endResponse(r, rb, resp, rerr, werr)
}
