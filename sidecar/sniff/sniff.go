package sniff

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"time"
)

// Conn is what Peek reads from: a net.Conn or anything with read deadlines.
type Conn interface {
	io.Reader
	SetReadDeadline(t time.Time) error
}

// Options tune Peek. The zero value is usable.
type Options struct {
	// Timeout bounds the wait for the client's first byte. Zero waits until
	// ctx ends; a caller that watches the server for a greeting cancels ctx
	// when one arrives.
	Timeout time.Duration
	// MoreTimeout bounds each wait for more bytes once some arrived but were
	// not enough to decide, or to complete a TLS ClientHello. Default 500ms.
	MoreTimeout time.Duration
	// MaxPeek caps how many bytes are read. Default 16 KiB + 5, a full TLS
	// record.
	MaxPeek int
}

// Result is what Peek found.
type Result struct {
	// Protocol is the client's protocol.
	Protocol Protocol
	// Prefix holds every byte Peek read; replay it before the rest of the
	// stream (see Reader).
	Prefix []byte
	// Hello is the ClientHello's clear text, when Protocol is TLS and the
	// whole first record arrived.
	Hello Hello
	// EOF is set when the client closed its sending side during Peek.
	EOF bool
}

// Reader returns a reader that yields r.Prefix and then the rest of src.
func (r Result) Reader(src io.Reader) io.Reader {
	if len(r.Prefix) == 0 {
		return src
	}
	return io.MultiReader(&prefixReader{b: r.Prefix}, src)
}

type prefixReader struct{ b []byte }

func (p *prefixReader) Read(b []byte) (int, error) {
	if len(p.b) == 0 {
		return 0, io.EOF
	}
	n := copy(b, p.b)
	p.b = p.b[n:]
	return n, nil
}

// Peek reads the first bytes conn sends and classifies them. It returns when
// the protocol is decided, when the client sends nothing within
// opts.Timeout or before ctx ends (then Protocol is TCP), or when the client
// closes. On return conn has no read deadline. The error is non-nil only for
// a real read error (not EOF, not a timeout); Prefix is valid even then.
func Peek(ctx context.Context, conn Conn, opts Options) (Result, error) {
	if opts.MoreTimeout <= 0 {
		opts.MoreTimeout = 500 * time.Millisecond
	}
	if opts.MaxPeek <= 0 {
		opts.MaxPeek = 5 + 1<<14
	}
	interrupted := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(interrupted)
		_ = conn.SetReadDeadline(time.Unix(1, 0))
	})
	defer func() {
		if !stop() {
			<-interrupted // let it set its deadline before we clear it
		}
		_ = conn.SetReadDeadline(time.Time{})
	}()
	if opts.Timeout > 0 {
		_ = conn.SetReadDeadline(time.Now().Add(opts.Timeout))
	}
	if ctx.Err() != nil {
		return Result{Protocol: TCP}, nil
	}

	res := Result{Protocol: TCP}
	buf := make([]byte, 0, min(512, opts.MaxPeek))
	for len(buf) < opts.MaxPeek {
		if len(buf) == cap(buf) {
			buf = append(buf, make([]byte, min(cap(buf), opts.MaxPeek-len(buf)))...)[:len(buf)]
		}
		n, err := conn.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		res.Prefix = buf
		if n > 0 {
			proto, more := Classify(buf)
			res.Protocol = proto
			if !more && (proto != TLS || recordComplete(buf)) {
				break
			}
			if ctx.Err() == nil {
				_ = conn.SetReadDeadline(time.Now().Add(opts.MoreTimeout))
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				res.EOF = true
				break
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			return res, err
		}
	}
	if res.Protocol == TLS {
		res.Hello, _ = ParseClientHello(buf)
	}
	return res, nil
}

// recordComplete reports whether data holds a whole TLS record.
func recordComplete(data []byte) bool {
	return len(data) >= 5 && len(data) >= 5+int(binary.BigEndian.Uint16(data[3:5]))
}
