package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/sidecar/gate"
	"github.com/chaperone-dev/chaperone/sidecar/http1"
	"github.com/chaperone-dev/chaperone/sidecar/http2"
	"github.com/chaperone-dev/chaperone/sidecar/k8s"
	"github.com/chaperone-dev/chaperone/sidecar/masking"
	"github.com/chaperone-dev/chaperone/sidecar/origdst"
)

// Defaults for Options.
const (
	DefaultListen       = ":15001"
	DefaultDialTimeout  = 10 * time.Second
	DefaultSniffTimeout = 0 // wait for the first byte until either side speaks
)

// Log keys.
const (
	keyConn   = "conn"
	keyDest   = "dest"
	keyClient = "client"
	keyProto  = "protocol"
	keyErr    = "err"
	keyReason = "reason"
	keyAddr   = "addr"
	keyCount  = "count"
)

// ErrClosed is returned by Serve after Shutdown.
var ErrClosed = errors.New("proxy closed")

// Recorder takes the proxy's events; *publish.Publisher is one.
type Recorder interface {
	// Publish records one event; the recorder sets Session and Seq.
	Publish(ctx context.Context, e *event.Event) error
	// PublishBlob stores a body by its ref ("sha256:<hex>").
	PublishBlob(ctx context.Context, ref string, data []byte) error
	// Accepting is nil while recording can be guaranteed.
	Accepting() error
}

// Options configure a Proxy.
type Options struct {
	// Listen is the address ListenAndServe listens on (default :15001).
	Listen string
	// Recorder receives the events. Required.
	Recorder Recorder
	// Session, if set, is put in every event; the Recorder may set it too.
	Session string
	// Identity is stamped on every event.
	Identity *event.Identity
	// Dialer dials original destinations. Default: a net.Dialer with
	// DialTimeout.
	Dialer *net.Dialer
	// DialTimeout bounds each upstream dial (default 10s).
	DialTimeout time.Duration
	// dial replaces Dialer in tests.
	dial dialFunc
	// clientFirstWait replaces the package's in tests (see clientFirstWait).
	clientFirstWait time.Duration
	// SniffTimeout bounds the wait for a client's first byte. Zero waits
	// until either side speaks: a server that speaks first ends the wait
	// at once, so server-first protocols are never delayed.
	SniffTimeout time.Duration
	// BodyCap and InlineLimit: see http1.Options and http2.Options.
	BodyCap     int64
	InlineLimit int
	// KubeAPI recognises connections to the Kubernetes API server: their
	// requests also yield k8s.request events, and the bodies of Secret
	// requests are masked. The zero Target matches nothing; Secrets found
	// by their kind are masked on every connection.
	KubeAPI k8s.Target
	// LLM configures the decoding of LLM API and MCP traffic.
	LLM LLMOptions
	// MaskResponses, when set, masks secrets in text responses on their
	// way to the agent (policy: maskResponses); nil relays them as sent.
	MaskResponses *masking.Inline
	// MaskResponsesByPolicy masks responses with MaskResponses only while
	// the policy in force (Gate) says maskResponses; false masks always.
	MaskResponsesByPolicy bool
	// FailOpen relays connections even when the Recorder cannot guarantee
	// recording; by default such connections are refused. A policy in
	// force decides instead (its onRecorderFailure).
	FailOpen bool
	// Gate, when set, sees every HTTP request before it is forwarded
	// (policy, approvals, credential brokering) and every other connection
	// before it is relayed. HTTP/1 requests are then held until decided
	// rather than relayed as they are read.
	Gate *gate.Gate
	// OriginalDst recovers a redirected connection's destination
	// (default origdst.Get). Tests inject their own.
	OriginalDst func(*net.TCPConn) (netip.AddrPort, error)
	// TLS, when set, intercepts TLS connections; nil passes them all
	// through, recorded as TLS metadata.
	TLS *TLSOptions
	// UpstreamIdle is how long an upstream HTTP/1.1 connection (plain, or
	// TLS set up by the sidecar) that a client left idle is kept for the
	// next client connection to the same destination (default 30s). A
	// negative value turns reuse off: every client connection then has
	// its own upstream connection, closes passed on.
	UpstreamIdle time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
	// Registerer receives the metrics; nil leaves them unregistered.
	Registerer prometheus.Registerer
}

// Proxy is the recording proxy. Create it with New.
type Proxy struct {
	opts   Options
	log    *slog.Logger
	m      *metrics
	http1  *http1.Recorder
	http2  *http2.Recorder
	tls    *tlsState
	dial   dialFunc
	own    ownConns // the upstream connections' local addresses
	pool   *upstreamPool
	idBase string
	nextID atomic.Uint64

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*liveConn]struct{}
	closed    bool
	wg        sync.WaitGroup
	serving   atomic.Int32
}

// New checks opts, fills in defaults and returns a Proxy.
func New(opts Options) (*Proxy, error) {
	if opts.Recorder == nil {
		return nil, errors.New("new proxy: no recorder")
	}
	if opts.Session != "" {
		if err := event.ValidSession(opts.Session); err != nil {
			return nil, fmt.Errorf("new proxy: %w", err)
		}
	}
	if opts.Listen == "" {
		opts.Listen = DefaultListen
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = DefaultDialTimeout
	}
	if opts.UpstreamIdle == 0 {
		opts.UpstreamIdle = DefaultUpstreamIdle
	}
	if opts.OriginalDst == nil {
		opts.OriginalDst = origdst.Get
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	ts, err := newTLSState(opts.TLS)
	if err != nil {
		return nil, fmt.Errorf("new proxy: %w", err)
	}
	dial := opts.dial
	if dial == nil {
		d := opts.Dialer
		if d == nil {
			d = &net.Dialer{}
		}
		dial = d.DialContext
	}
	p := &Proxy{
		opts:      opts,
		log:       opts.Logger,
		m:         newMetrics(opts.Registerer),
		tls:       ts,
		dial:      dial,
		idBase:    event.NewID(time.Now())[16:], // random per process: ids stay unique across restarts
		listeners: map[net.Listener]struct{}{},
		conns:     map[*liveConn]struct{}{},
	}
	p.pool = newUpstreamPool(opts.UpstreamIdle, p.m.idle)
	var hook http1.RequestHook
	if opts.Gate != nil {
		hook = p.requestHook
	}
	p.http1 = http1.New(http1.Options{
		BodyCap:     opts.BodyCap,
		InlineLimit: opts.InlineLimit,
		Logger:      opts.Logger,
		RequestHook: hook,
	})
	p.http2 = http2.New(http2.Options{
		BodyCap:     opts.BodyCap,
		InlineLimit: opts.InlineLimit,
		Logger:      opts.Logger,
		RequestHook: hook,
	})
	return p, nil
}

// ListenAndServe listens on Options.Listen and serves; see Serve.
func (p *Proxy) ListenAndServe(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", p.opts.Listen)
	if err != nil {
		return fmt.Errorf("proxy listen: %w", err)
	}
	return p.Serve(ctx, ln)
}

// Serve accepts connections on ln until Shutdown (then it returns
// ErrClosed) or until ctx ends (then it closes ln and every live
// connection at once and returns ctx's error). ctx also carries the
// connections' recording.
func (p *Proxy) Serve(ctx context.Context, ln net.Listener) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = ln.Close()
		return ErrClosed
	}
	p.listeners[ln] = struct{}{}
	p.mu.Unlock()
	p.serving.Add(1)
	defer p.serving.Add(-1)
	defer func() {
		p.mu.Lock()
		delete(p.listeners, ln)
		p.mu.Unlock()
		_ = ln.Close()
	}()
	stop := context.AfterFunc(ctx, func() {
		_ = ln.Close()
		p.closeAll()
		p.pool.closeAll()
	})
	defer stop()

	self := newSelfCheck(ln.Addr())
	p.log.Info("proxy listening", keyAddr, ln.Addr().String(), "fail_open", p.opts.FailOpen)
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if p.isClosed() {
				return ErrClosed
			}
			var ne net.Error
			if (errors.As(err, &ne) && ne.Timeout()) || isResourceExhausted(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				p.log.Warn("accept", keyErr, err, "retry_in", delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("proxy accept: %w", err)
		}
		delay = 0
		tc, ok := c.(*net.TCPConn)
		if !ok {
			_ = c.Close()
			continue
		}
		lc := &liveConn{client: tc}
		if !p.track(lc) {
			_ = tc.Close()
			return ErrClosed
		}
		go func() {
			defer p.untrack(lc)
			p.handle(ctx, lc, self)
		}()
	}
}

// Ready is nil while the proxy accepts connections.
func (p *Proxy) Ready() error {
	if p.isClosed() {
		return ErrClosed
	}
	if p.serving.Load() == 0 {
		return errors.New("proxy not serving")
	}
	return nil
}

// Active returns the number of connections being handled.
func (p *Proxy) Active() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Shutdown stops accepting, lets live connections finish until ctx ends,
// then closes the rest and waits for their conn.close events. It returns
// nil when every connection finished by itself, else an error saying how
// many were cut.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	p.closed = true
	for ln := range p.listeners {
		_ = ln.Close()
	}
	live := len(p.conns)
	p.mu.Unlock()
	p.pool.closeAll()
	p.log.Info("proxy shutting down", keyCount, live)

	done := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		p.log.Info("proxy drained", keyCount, live)
		return nil
	case <-ctx.Done():
	}
	cut := p.closeAll()
	<-done
	p.log.Warn("proxy closed live connections at shutdown", keyCount, cut)
	return fmt.Errorf("proxy shutdown: closed %d live connections: %w", cut, ctx.Err())
}

func (p *Proxy) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

func (p *Proxy) track(c *liveConn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	p.wg.Add(1)
	p.m.active.Inc()
	return true
}

// untrack ends the handling of c; Shutdown waits for it.
func (p *Proxy) untrack(c *liveConn) {
	p.relayed(c)
	p.wg.Done()
}

// relayed takes c off the live set once nothing is relayed any more, so
// that Shutdown neither waits for nor cuts a connection that only has its
// conn.close left to record.
func (p *Proxy) relayed(c *liveConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.conns[c]; ok {
		delete(p.conns, c)
		p.m.active.Dec()
	}
}

// closeAll cuts every live connection and returns how many.
func (p *Proxy) closeAll() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.cut()
	}
	return len(p.conns)
}

// liveConn is a connection being handled, so that shutdown can cut it.
type liveConn struct {
	client *net.TCPConn
	mu     sync.Mutex
	up     *net.TCPConn
	wasCut bool
}

func (c *liveConn) setUpstream(u *net.TCPConn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.up = u
	return !c.wasCut
}

// releaseUpstream forgets the upstream connection, which outlives c in
// the pool, and reports whether c was not cut.
func (c *liveConn) releaseUpstream() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.up = nil
	return !c.wasCut
}

func (c *liveConn) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wasCut = true
	_ = c.client.Close()
	if c.up != nil {
		_ = c.up.Close()
	}
}

func (c *liveConn) isCut() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wasCut
}

// selfCheck tells whether a destination is the proxy's own listener, which
// would make the proxy dial itself forever.
type selfCheck struct {
	port  uint16
	addrs map[netip.Addr]bool
	any   bool
}

func newSelfCheck(a net.Addr) selfCheck {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return selfCheck{}
	}
	s := selfCheck{port: ap.Port(), addrs: map[netip.Addr]bool{ap.Addr().Unmap(): true}}
	if ap.Addr().IsUnspecified() {
		s.any = true
		if ifAddrs, err := net.InterfaceAddrs(); err == nil {
			for _, ia := range ifAddrs {
				if pfx, err := netip.ParsePrefix(ia.String()); err == nil {
					s.addrs[pfx.Addr().Unmap()] = true
				}
			}
		}
	}
	return s
}

func (s selfCheck) is(dst netip.AddrPort) bool {
	if s.port == 0 || dst.Port() != s.port {
		return false
	}
	a := dst.Addr().Unmap()
	return s.addrs[a] || a.IsUnspecified() || (s.any && a.IsLoopback())
}
