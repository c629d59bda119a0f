package http2

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/sidecar/http1"
)

// Defaults for Options.
const (
	DefaultBodyCap       = http1.DefaultBodyCap
	DefaultInlineLimit   = http1.DefaultInlineLimit
	DefaultChunkSize     = 16 << 10
	DefaultFlushInterval = 250 * time.Millisecond
	DefaultStreamCap     = 64 << 20
	// DefaultMaxStreams bounds the concurrent streams of one client
	// connection, and with them the memory it can hold.
	DefaultMaxStreams = 250
)

// Sink receives the records of one connection: http1.Sink's records, plus
// the chunks of streamed response bodies. Blob is called with a body's
// bytes before the record that names them.
type Sink interface {
	http1.Sink
	StreamData(ctx context.Context, t time.Time, d *event.StreamData) error
}

// Refusal is an answer given to the client instead of forwarding a
// request; the same as HTTP/1's.
type Refusal = http1.Refusal

// Verdict is a RequestHook's answer; the same as HTTP/1's.
type Verdict = http1.Verdict

// RequestHook is called for every request before it is forwarded, with
// its stream id; see http1.RequestHook. req is the request as it will be
// sent upstream: the hook may change its headers (to swap a credential
// placeholder, say); it must not read its body. The request is recorded
// as the client sent it, whatever the hook changes. An error answers 502.
// ctx carries the values of the ctx given to Serve.
type RequestHook = http1.RequestHook

// Options tune a Recorder. Zero values take the defaults.
type Options struct {
	// BodyCap is how many bytes of each buffered body are recorded
	// (default 1 MiB); negative records none. Bodies are relayed whole.
	BodyCap int64
	// InlineLimit is the largest body kept inline in a record (default
	// 4 KiB); larger recorded bodies go to the sink as blobs.
	InlineLimit int
	// ChunkSize is the most bytes of a streamed body one stream.data event
	// holds (default 16 KiB).
	ChunkSize int
	// FlushInterval is how long streamed bytes wait for more before they
	// are recorded, and how long a response of unknown length may last
	// before it is recorded as a stream (default 250 ms).
	FlushInterval time.Duration
	// StreamCap is how many bytes of one streamed body are recorded
	// (default 64 MiB; negative: none); later chunks record sizes only.
	StreamCap int64
	// MaxStreams bounds the concurrent streams per client connection
	// (default DefaultMaxStreams).
	MaxStreams uint32
	// RequestHook, if set, sees every request before it is forwarded.
	RequestHook RequestHook
	// Logger gets debug lines about failed streams. Default: discard.
	Logger *slog.Logger
}

// Recorder relays and records HTTP/2 connections. It is safe for
// concurrent use; each Serve call handles one connection.
type Recorder struct {
	opts      Options
	transport *http2.Transport
}

// New returns a Recorder with opts, defaults filled in.
func New(opts Options) *Recorder {
	if opts.BodyCap == 0 {
		opts.BodyCap = DefaultBodyCap
	}
	if opts.BodyCap < 0 {
		opts.BodyCap = 0
	}
	if opts.InlineLimit <= 0 {
		opts.InlineLimit = DefaultInlineLimit
	}
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = DefaultChunkSize
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = DefaultFlushInterval
	}
	if opts.StreamCap == 0 {
		opts.StreamCap = DefaultStreamCap
	}
	if opts.StreamCap < 0 {
		opts.StreamCap = 0
	}
	if opts.MaxStreams == 0 {
		opts.MaxStreams = DefaultMaxStreams
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Recorder{
		opts: opts,
		transport: &http2.Transport{
			// The upstream conn is given, plaintext (h2c) or TLS.
			AllowHTTP: true,
			// Relay bodies as they are encoded; never add Accept-Encoding.
			DisableCompression: true,
		},
	}
}

// Stats describe a relayed connection.
type Stats struct {
	// BytesUp counts bytes read from the client (frames, not bodies).
	BytesUp int64
	// BytesDown counts bytes written to the client.
	BytesDown int64
	// Requests and Responses count the recorded exchanges.
	Requests, Responses int
	// Err is why the connection ended abnormally: the upstream connection
	// could not be set up or failed, or ctx ended. Nil when the client
	// closed.
	Err error
	// RecordErr is the first error the sink returned.
	RecordErr error
}

// ErrUpstream wraps upstream connection failures in Stats.Err.
var ErrUpstream = errors.New("http2 upstream")

// upstreamDrain bounds how long the client may keep its connection after
// the upstream one died and it was sent a GOAWAY.
const upstreamDrain = 5 * time.Second

// Serve relays the HTTP/2 connection client (TLS-terminated with ALPN
// "h2", or h2c with prior knowledge: client must still yield the
// connection preface) to upstream, an HTTP/2 connection to the real
// destination (TLS-established, or plaintext), and records every exchange
// to sink. scheme ("https" or "http") and host (used when a request has no
// :authority) build the recorded URLs. It returns when the client
// connection ended, the upstream connection failed, or ctx ended, and it
// closes both conns.
func (r *Recorder) Serve(ctx context.Context, client, upstream net.Conn, scheme, host string, sink Sink) Stats {
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	counted := countConn(client)
	up := &watchedConn{Conn: upstream, dead: make(chan struct{})}
	c := &conn{
		r:      r,
		parent: parent,
		ctx:    ctx,
		sink:   sink,
		scheme: scheme,
		host:   host,
		upDead: up.dead,
	}
	cc, err := r.transport.NewClientConn(up)
	if err != nil {
		_ = client.Close()
		_ = upstream.Close()
		return Stats{Err: fmt.Errorf("%w: %w", ErrUpstream, err)}
	}
	c.cc = cc
	stop := context.AfterFunc(ctx, func() {
		_ = client.Close()
		_ = upstream.Close()
	})
	defer stop()
	// A server per connection: shutting its http.Server down sends this
	// connection, and only this one, a GOAWAY.
	hs := &http.Server{ErrorLog: slog.NewLogLogger(r.opts.Logger.Handler(), slog.LevelDebug), ReadHeaderTimeout: time.Minute}
	// x/net marks its Server deprecated in favour of net/http's, which
	// cannot serve one given conn; ServeConn is what this package needs.
	srv := &http2.Server{MaxConcurrentStreams: r.opts.MaxStreams} //nolint:staticcheck // see above
	if err := http2.ConfigureServer(hs, srv); err != nil {        //nolint:staticcheck // see above
		_ = cc.Close()
		_ = client.Close()
		_ = upstream.Close()
		return Stats{Err: fmt.Errorf("configure http2 server: %w", err)}
	}
	goAway := func() { go func() { _ = hs.Shutdown(context.WithoutCancel(ctx)) }() }
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		c.watchUpstream(client, goAway)
	}()

	srv.ServeConn(counted, &http2.ServeConnOpts{Context: ctx, Handler: c, BaseConfig: hs})
	// No handler starts after ServeConn returned; wait for the running
	// ones so that their records are complete.
	c.handlers.Wait()
	c.closing.Store(true)
	_ = cc.Close()
	_ = upstream.Close()
	_ = client.Close()
	cancel()
	<-watchDone

	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.stats
	st.BytesUp, st.BytesDown = counted.counts()
	return st
}

// conn is the state of one Serve call; it is the client side's handler.
type conn struct {
	r      *Recorder
	parent context.Context
	ctx    context.Context
	sink   Sink
	scheme string
	host   string
	cc     *http2.ClientConn
	upDead <-chan struct{}

	handlers sync.WaitGroup
	nextID   atomic.Uint64 // fallback stream numbering

	// closing is set once Serve tears the upstream down itself.
	closing atomic.Bool

	mu    sync.Mutex
	stats Stats
}

// watchUpstream ends the client connection once the upstream one died:
// a GOAWAY at once, so that the client sends no new streams here, and a
// hard close if the client has not let go after upstreamDrain.
func (c *conn) watchUpstream(client net.Conn, goAway func()) {
	select {
	case <-c.ctx.Done():
		// Serve's caller ended it, or Serve is returning.
		if err := c.parent.Err(); err != nil {
			c.setErr(err)
		}
		return
	case <-c.upDead:
	}
	if c.closing.Load() {
		return
	}
	c.setErr(fmt.Errorf("%w: connection lost", ErrUpstream))
	goAway()
	t := time.NewTimer(upstreamDrain)
	defer t.Stop()
	select {
	case <-t.C:
		_ = client.Close()
	case <-c.ctx.Done():
	}
}

func (c *conn) setErr(err error) {
	c.mu.Lock()
	if c.stats.Err == nil {
		c.stats.Err = err
	}
	c.mu.Unlock()
}

func (c *conn) recordFailed(err error) {
	c.mu.Lock()
	if c.stats.RecordErr == nil {
		c.stats.RecordErr = err
	}
	c.mu.Unlock()
}

func (c *conn) count(req, resp int) {
	c.mu.Lock()
	c.stats.Requests += req
	c.stats.Responses += resp
	c.mu.Unlock()
}

// watchedConn closes dead on the first read error: the upstream
// connection is gone (the transport's read loop is its only reader).
type watchedConn struct {
	net.Conn
	once sync.Once
	dead chan struct{}
}

func (w *watchedConn) Read(p []byte) (int, error) {
	n, err := w.Conn.Read(p)
	if err != nil {
		w.once.Do(func() { close(w.dead) })
	}
	return n, err
}

// countingConn counts the bytes of the client connection.
type countingConn struct {
	net.Conn
	up, down atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.up.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.down.Add(int64(n))
	return n, err
}

func (c *countingConn) counts() (int64, int64) { return c.up.Load(), c.down.Load() }

// countingTLSConn keeps the TLS state visible: the HTTP/2 server checks
// the TLS version and cipher suite of a conn that has one.
type countingTLSConn struct {
	*countingConn
	state func() tls.ConnectionState
}

func (c countingTLSConn) ConnectionState() tls.ConnectionState { return c.state() }

type counter interface {
	net.Conn
	counts() (int64, int64)
}

func countConn(c net.Conn) counter {
	cc := &countingConn{Conn: c}
	if s, ok := c.(interface{ ConnectionState() tls.ConnectionState }); ok {
		return countingTLSConn{countingConn: cc, state: s.ConnectionState}
	}
	return cc
}
