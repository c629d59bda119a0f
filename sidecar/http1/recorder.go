package http1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

// Defaults for Options.
const (
	DefaultBodyCap        = 1 << 20
	DefaultInlineLimit    = 4 << 10
	DefaultMaxHeaderBytes = 256 << 10
	// DefaultPairWait bounds how long a response waits for its request's
	// record before it is recorded anyway (an early response to a request
	// whose body is still arriving), and how long an unrequested response
	// waits for a request to pair with.
	DefaultPairWait = time.Second
)

// Sink receives the records of one connection. Blob is called with a body's
// bytes before the record that names them.
type Sink interface {
	Blob(ctx context.Context, ref string, data []byte) error
	Request(ctx context.Context, t time.Time, r *event.HTTPRequest) error
	Response(ctx context.Context, t time.Time, r *event.HTTPResponse) error
}

// Conn is one side of a relayed connection; *net.TCPConn is one.
type Conn interface {
	io.Reader
	io.Writer
	// CloseWrite half-closes the connection: the peer reads EOF.
	CloseWrite() error
	Close() error
}

// Options tune a Recorder. Zero values take the defaults.
type Options struct {
	// BodyCap is how many bytes of each body are recorded (default 1 MiB);
	// negative records none. The whole body is relayed regardless.
	BodyCap int64
	// InlineLimit is the largest body kept inline in a record (default
	// 4 KiB); larger recorded bodies go to the sink as blobs.
	InlineLimit int
	// MaxHeaderBytes bounds a request or response head (default 256 KiB).
	// A longer head is a parse error: it is relayed, not recorded.
	MaxHeaderBytes int64
	// PairWait: see DefaultPairWait.
	PairWait time.Duration
	// RequestHook, if set, sees every request before any byte of it is
	// forwarded (see RequestHook). Without it requests are relayed as they
	// are read, which is cheaper.
	RequestHook RequestHook
	// Logger gets debug lines about parse fallbacks. Default: discard.
	Logger *slog.Logger
}

// Recorder relays and records HTTP/1.x connections. It is safe for
// concurrent use; each Relay call handles one connection.
type Recorder struct {
	opts Options
	work *workers
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
	if opts.MaxHeaderBytes <= 0 {
		opts.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if opts.PairWait <= 0 {
		opts.PairWait = DefaultPairWait
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Recorder{opts: opts, work: newWorkers()}
}

// Pair is a connection to relay: the client's side and the upstream's.
type Pair struct {
	Client   Conn
	Upstream Conn
	// ClientPrefix and UpstreamPrefix are bytes already read from each side
	// (by sniffing); they are relayed first.
	ClientPrefix   []byte
	UpstreamPrefix []byte
	// Reuse keeps the upstream connection fit for another client: the
	// client's "Connection: close" is not passed on (the sidecar answers
	// it with "Connection: close" and closes the client itself), nor is
	// its half-close at a message boundary. Stats.Reusable then says
	// whether the upstream connection ended idle and may carry the next
	// client's requests. Upstream must have SetReadDeadline.
	Reuse bool
}

// Stats describe a relayed connection.
type Stats struct {
	// BytesUp counts bytes relayed client → upstream, prefix included.
	BytesUp int64
	// BytesDown counts bytes relayed upstream → client.
	BytesDown int64
	// Requests and Responses count the recorded exchanges.
	Requests, Responses int
	// Upgraded is set when the connection switched protocols (101 or a
	// CONNECT tunnel) and the rest was relayed raw.
	Upgraded bool
	// ParseErr is the first parse error of either side; after it that side
	// was relayed raw. Nil when everything parsed.
	ParseErr error
	// Err is why the relay ended abnormally (a read or write error on
	// either side, or ctx), nil for a clean close of both sides.
	Err error
	// RecordErr is the first error the sink returned.
	RecordErr error
	// Reusable says, for a Pair with Reuse, that the upstream connection
	// is idle between messages, open, and was not asked to close: it may
	// be handed to another client.
	Reusable bool
}

// ErrParse wraps every parse error in Stats.ParseErr.
var ErrParse = errors.New("http1 parse")

// errRelay marks a write to the other peer that failed: relaying cannot go
// on, so the connection is torn down.
var errRelay = errors.New("relay write")

// tee reads from src and writes every byte read to dst before returning it,
// so that parsing never changes what is relayed. limit, when >= 0, bounds
// the bytes read until it is lifted (head parsing).
type tee struct {
	src   io.Reader
	dst   Conn
	n     int64
	limit int64
	// eof is set once src returned io.EOF; err holds a read error other
	// than EOF or a failed relay write: the connection itself failed.
	eof bool
	err error
	// hold keeps what is read in held instead of relaying it: the gated
	// client side forwards a request only once its hook allowed it, and
	// then exactly the bytes the parser consumed (see release); a
	// rewriting upstream side lets a response be rewritten before the
	// client sees it. read counts the bytes read from src and heldAt is
	// the offset of held[0].
	hold   bool
	held   []byte
	read   int64
	heldAt int64
	// pre is a rewritten head that goes out before the next held bytes
	// forwarded, in the same write.
	pre []byte
	// parked is set when the relay stops reading an upstream connection
	// that stays open for reuse: the read deadline that interrupts the
	// read is then a clean stop (errParked), not a failure.
	parked atomic.Bool
	// discard drops what is read: the rest of a client that asked to
	// close, which must not reach an upstream connection kept open.
	discard bool
}

// errParked ends the reading of an upstream connection kept for reuse.
var errParked = errors.New("upstream connection parked for reuse")

var errHeadTooLarge = errors.New("message head too large")

func (t *tee) Read(p []byte) (int, error) {
	if t.limit >= 0 {
		if t.limit == 0 {
			return 0, errHeadTooLarge
		}
		p = p[:min(int64(len(p)), t.limit)]
	}
	n, err := t.src.Read(p)
	if err != nil && t.parked.Load() && errors.Is(err, os.ErrDeadlineExceeded) {
		return n, errParked
	}
	if t.discard {
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrDeadlineExceeded) {
			t.err = err
		}
		return n, err
	}
	if n > 0 && t.hold {
		if t.limit >= 0 {
			t.limit -= int64(n)
		}
		t.read += int64(n)
		t.held = append(t.held, p[:n]...)
	} else if n > 0 {
		if t.limit >= 0 {
			t.limit -= int64(n)
		}
		t.read += int64(n)
		w, werr := t.dst.Write(p[:n])
		t.n += int64(w)
		if werr != nil {
			t.err = fmt.Errorf("%w: %w", errRelay, werr)
			return n, t.err
		}
	}
	switch {
	case err == nil:
	case errors.Is(err, io.EOF):
		if !t.eof {
			t.eof = true
			// Pass the half-close on at once: nothing else will come from
			// this peer, whatever the parser still has buffered. Held
			// bytes go first (see unhold and closeHeld).
			if t.hold {
				break
			}
			if cerr := t.dst.CloseWrite(); cerr != nil {
				t.err = fmt.Errorf("%w: close write: %w", errRelay, cerr)
				return n, t.err
			}
		}
	default:
		t.err = err
	}
	return n, err
}

// failed returns the connection failure seen by this side, if any.
func (t *tee) failed() error { return t.err }

// conn is the state shared by the two directions of one Relay.
type conn struct {
	r    *Recorder
	ctx  context.Context
	sink Sink

	up, down       *tee
	upBuf, downBuf *bufio.Reader
	pending        chan *exchange
	clientDone     chan struct{} // the client side stopped producing exchanges
	upstreamDone   chan struct{}
	abortOnce      sync.Once
	records        sync.WaitGroup // request records in flight
	pair           Pair
	// rw rewrites responses (see Rewriter); nil relays them as they come.
	rw    Rewriter
	mu    sync.Mutex
	stats Stats
	// tap watches the connection after a switch of protocols, if any.
	tap Tap

	// upDeadline is the upstream Conn when Pair.Reuse holds for this
	// connection (the upstream has read deadlines), else nil.
	upDeadline readDeadliner
	// noReuse and last belong to the client side: noReuse is set once a
	// request makes the upstream connection unfit for another client (an
	// HTTP/1.0 request, an upgrade), last is the last request forwarded.
	noReuse bool
	last    *exchange
	// upIdle belongs to the upstream side: it stopped reading between
	// messages, with nothing unread and the connection left open.
	upIdle bool
}

// exchange is one request on its way to being paired with its response.
type exchange struct {
	stream  uint64
	method  string
	target  string // the request-target, as sent
	host    string
	header  http.Header // kept for upgrade requests only
	upgrade bool
	start   time.Time
	// end is when the request body finished; read it after recorded closes.
	end      time.Time
	recorded chan struct{}
	// answered closes when the final response was recorded.
	answered chan struct{}
	// switched receives whether the server switched protocols; only for
	// upgrade requests.
	switched chan bool
	// metaOnly records the exchange without bodies (RequestHook's
	// Verdict).
	metaOnly bool
	// tap is set, before switched receives true, when the sink watches
	// the upgraded connection.
	tap Tap
	// responded is set once the final response was handed to a worker to
	// be recorded; answered then closes soon, even after the upstream
	// side ended.
	responded atomic.Bool
	// obs observes the exchange for the sink; nil when it does not.
	obs Exchange
	// proto11 says the client speaks HTTP/1.1 or later.
	proto11 bool
	// closeAfter: the client asked to close after this exchange and, the
	// upstream connection being kept, the sidecar answers that itself.
	closeAfter bool
	// relayed closes when the final response was relayed to its end (or
	// the upstream side ended); only on connections with Reuse.
	relayed chan struct{}
}

// Relay relays p until both sides closed (or one failed, or ctx ended) and
// records every exchange to sink. It closes neither Conn; the caller does.
func (r *Recorder) Relay(ctx context.Context, p Pair, sink Sink) Stats {
	c := &conn{
		r:            r,
		ctx:          ctx,
		sink:         sink,
		pair:         p,
		pending:      make(chan *exchange, 64),
		clientDone:   make(chan struct{}),
		upstreamDone: make(chan struct{}),
	}
	if d, ok := p.Upstream.(readDeadliner); ok && p.Reuse && len(p.UpstreamPrefix) == 0 {
		c.upDeadline = d
	}
	reuse := c.upDeadline != nil
	c.up = &tee{src: prefixed(p.ClientPrefix, p.Client), dst: p.Upstream, limit: -1, hold: r.opts.RequestHook != nil || reuse}
	c.down = &tee{src: prefixed(p.UpstreamPrefix, p.Upstream), dst: p.Client, limit: -1, hold: reuse}
	if rw, ok := sink.(Rewriter); ok && rw.RewritesResponses() {
		c.rw = rw
		c.down.hold = true
	}
	c.upBuf = getReader(c.up)
	c.downBuf = getReader(c.down)
	defer putReader(c.upBuf)
	defer putReader(c.downBuf)

	stop := context.AfterFunc(ctx, func() { c.abort(ctx.Err()) })
	defer stop()

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer close(c.clientDone)
		err := c.clientSide()
		if err == nil && c.reusing() {
			c.park()
		}
		c.finish(err)
	}()
	go func() {
		defer wg.Done()
		defer close(c.upstreamDone)
		c.finish(c.upstreamSide())
	}()
	wg.Wait()
	c.records.Wait()

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tap != nil {
		// Both directions ended: flush what the tap still holds.
		c.tap.Close()
	}
	c.stats.BytesUp = c.up.n
	c.stats.BytesDown = c.down.n
	c.stats.Reusable = c.reusing() && c.upIdle && c.stats.Err == nil && c.stats.ParseErr == nil && !c.stats.Upgraded
	if c.stats.Reusable {
		if err := c.upDeadline.SetReadDeadline(time.Time{}); err != nil {
			c.stats.Reusable = false
		}
	}
	return c.stats
}

// readBufSize is the read buffer of each side of a connection: a message
// head must fit in it (MaxHeaderBytes beyond it still parses, in steps).
const readBufSize = 32 << 10

// readers keeps the sides' read buffers between connections: a connection
// per request (Connection: close, TLS per request) would otherwise
// allocate 64 KiB that the collector must reclaim.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufSize) }}

func getReader(r io.Reader) *bufio.Reader {
	br := readers.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

// putReader returns br once nothing reads it: Relay returns only after
// both sides and every record ended.
func putReader(br *bufio.Reader) {
	br.Reset(nil)
	readers.Put(br)
}

func prefixed(prefix []byte, r io.Reader) io.Reader {
	if len(prefix) == 0 {
		return r
	}
	return io.MultiReader(strings.NewReader(string(prefix)), r)
}

// finish ends one direction. After a clean EOF the tee has already passed
// the half-close on; after an error both connections are closed, so the
// other direction ends as well.
func (c *conn) finish(err error) {
	if err == nil || errors.Is(err, io.EOF) {
		return
	}
	c.abort(err)
}

// abort tears the connection down; err, if any, becomes Stats.Err.
func (c *conn) abort(err error) {
	c.abortOnce.Do(func() {
		if err != nil {
			c.mu.Lock()
			c.stats.Err = err
			c.mu.Unlock()
		}
		_ = c.pair.Client.Close()
		_ = c.pair.Upstream.Close()
	})
}

// parseFailed notes a parse error; the caller then relays its side raw.
func (c *conn) parseFailed(side string, stream uint64, err error) {
	err = fmt.Errorf("%w: %s message %d: %w", ErrParse, side, stream, err)
	c.r.opts.Logger.Debug("relaying raw after parse error", "err", err)
	c.mu.Lock()
	if c.stats.ParseErr == nil {
		c.stats.ParseErr = err
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

// drain relays the rest of a side raw.
func drain(br *bufio.Reader) error {
	_, err := io.Copy(io.Discard, br)
	return err
}

// upgradeRequested reports whether a request asks to leave HTTP/1 on this
// connection: CONNECT, or Connection: upgrade with an Upgrade header.
func upgradeRequested(req *http.Request) bool {
	if req.Method == http.MethodConnect {
		return true
	}
	if req.Header.Get("Upgrade") == "" {
		return false
	}
	for tok := range connectionOptions(req.Header) {
		if strings.EqualFold(tok, "upgrade") {
			return true
		}
	}
	return false
}

// connectionOptions yields the options of h's Connection header lines,
// trimmed, empty ones left out.
func connectionOptions(h http.Header) iter.Seq[string] {
	return func(yield func(string) bool) {
		for _, v := range h.Values("Connection") {
			for tok := range strings.SplitSeq(v, ",") {
				if tok = strings.TrimSpace(tok); tok != "" && !yield(tok) {
					return
				}
			}
		}
	}
}
