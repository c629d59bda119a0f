package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/sidecar/http1"
	"github.com/chaperone-dev/chaperone/sidecar/sniff"
)

// errCut is the conn.close error of a connection cut at shutdown.
var errCut = errors.New("closed by sidecar shutdown")

// handle serves one accepted connection from start to conn.close.
func (p *Proxy) handle(ctx context.Context, lc *liveConn, self selfCheck) {
	client := lc.client
	defer client.Close()
	start := time.Now()
	id := fmt.Sprintf("%s-%d", p.idBase, p.nextID.Add(1))
	log := p.log.With(keyConn, id, keyClient, client.RemoteAddr().String())

	dst, err := p.opts.OriginalDst(client)
	if err != nil {
		p.refuse(ctx, id, lc, nil, reasonOrigDst, fmt.Sprintf("original destination: %v", err), start)
		return
	}
	dest := &event.Destination{Addr: dst.String()}
	log = log.With(keyDest, dest.Addr)
	if self.is(dst) {
		p.refuse(ctx, id, lc, dest, reasonLoop, "destination is the sidecar's own listener", start)
		return
	}
	if err := p.opts.Recorder.Accepting(); err != nil {
		if !p.failOpen() {
			p.refuse(ctx, id, lc, dest, reasonRecording, fmt.Sprintf("recording unavailable: %v", err), start)
			return
		}
		log.Warn("relaying without guaranteed recording (fail-open)", keyErr, err)
	}

	// A destination the pool keeps connections to speaks HTTP or TLS,
	// client first: hear the client before choosing its connection.
	var up *upstreamConn
	var res sniff.Result
	var upFirst []byte
	heard := false
	if p.pool.knows(dst) {
		wait := clientFirstWait
		if p.opts.clientFirstWait > 0 {
			wait = p.opts.clientFirstWait
		}
		if p.opts.SniffTimeout > 0 {
			wait = min(wait, p.opts.SniffTimeout)
		}
		res, err = sniff.Peek(ctx, client, sniff.Options{Timeout: wait})
		// A client that stays silent may be waiting for a server that
		// speaks first after all: dial, and sniff both sides.
		heard = len(res.Prefix) > 0 || err != nil
		if heard {
			up = p.pool.get(p.poolKey(dst, res))
		}
	}
	if up == nil {
		var derr error
		up, derr = p.dialUpstream(ctx, dst)
		if derr != nil {
			p.refuse(ctx, id, lc, dest, reasonUpstream, fmt.Sprintf("upstream unreachable: %v", derr), start)
			return
		}
		p.m.upstreams.WithLabelValues(upstreamDialed).Inc()
	} else {
		p.m.upstreams.WithLabelValues(upstreamReused).Inc()
	}
	kept := false
	defer func() {
		if !kept {
			up.close()
		}
	}()
	if !lc.setUpstream(up.tcp) {
		return
	}
	if !heard {
		res, upFirst, err = p.sniff(ctx, client, up.tcp)
	}
	if len(upFirst) == 0 {
		up.key = p.poolKey(dst, res)
	}
	if err != nil {
		log.Debug("sniff", keyErr, err)
	}
	// The client spoke, so a connection of ours has been registered by
	// now: one that came back to us (see ownConns) goes on unrecorded.
	if p.own.has(client.RemoteAddr(), dst) {
		log.Info("own upstream connection redirected back to the sidecar; relayed raw")
		p.m.loops.Inc()
		_, _, _ = relayRaw(client, up.tcp, res.Prefix, upFirst)
		return
	}
	dest.Protocol = string(res.Protocol)
	if res.Protocol == sniff.HTTP2 {
		dest.Protocol = protoH2C
	}
	if res.Hello.SNI != "" {
		dest.Host = res.Hello.SNI
	}
	var tlsInfo *event.TLSInfo
	if res.Protocol == sniff.TLS {
		ok, why := p.tls.intercepts(res.Hello, dst.Addr())
		if ok {
			kept = p.intercept(ctx, id, lc, log, dst, dest, res, up, start)
			return
		}
		log.Debug("tls passed through", keyReason, why)
		p.m.tls.WithLabelValues(modePassthrough).Inc()
		tlsInfo = &event.TLSInfo{SNI: res.Hello.SNI, ALPN: res.Hello.ALPN}
	}
	if res.Protocol != sniff.HTTP1 && res.Protocol != sniff.HTTP2 && !p.gateConn(ctx, id, lc, dst, dest, start) {
		return
	}
	p.m.conns.WithLabelValues(dest.Protocol).Inc()
	p.publish(ctx, id, lc, p.newEvent(event.KindConnOpen, start, id, dest, func(e *event.Event) {
		e.ConnOpen = &event.ConnOpen{Client: client.RemoteAddr().String(), TLS: tlsInfo}
	}))
	log.Debug("connection open", keyProto, dest.Protocol)

	cls := &event.ConnClose{TLS: tlsInfo}
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	switch res.Protocol {
	case sniff.HTTP1:
		sink := p.newSink(ctx, id, lc, dst, dest)
		st := p.http1.Relay(sink.ctx, http1.Pair{
			Client: client, Upstream: up.tcp,
			ClientPrefix: res.Prefix, UpstreamPrefix: upFirst,
			Reuse: p.pool != nil,
		}, sink)
		cls.BytesUp, cls.BytesDown = st.BytesUp, st.BytesDown
		errs = append(errs, st.Err, st.ParseErr)
		kept = st.Reusable && p.keep(lc, up)
	case sniff.HTTP2:
		// The client's preface was read while sniffing: replay it to the
		// HTTP/2 server, and anything the upstream said to its client.
		sink := p.newSink(ctx, id, lc, dst, dest)
		st := p.http2.Serve(sink.ctx,
			&prefixConn{TCPConn: client, prefix: res.Prefix},
			&prefixConn{TCPConn: up.tcp, prefix: upFirst},
			"http", dst.String(), sink)
		cls.BytesUp, cls.BytesDown = st.BytesUp, st.BytesDown
		errs = append(errs, st.Err)
	default:
		up, down, rerr := relayRaw(client, up.tcp, res.Prefix, upFirst)
		cls.BytesUp, cls.BytesDown = up, down
		errs = append(errs, rerr)
	}
	p.finish(ctx, id, lc, log, dest, cls, start, errs)
}

// finish records the end of a relayed connection: cls with its duration
// and the errors that ended it.
func (p *Proxy) finish(ctx context.Context, id string, lc *liveConn, log *slog.Logger, dest *event.Destination, cls *event.ConnClose, start time.Time, errs []error) {
	p.relayed(lc)
	if lc.isCut() {
		errs = append(errs, errCut)
	}
	if err := errors.Join(errs...); err != nil {
		cls.Error = err.Error()
	}
	cls.Duration = time.Since(start)
	p.m.bytes.WithLabelValues("up").Add(float64(cls.BytesUp))
	p.m.bytes.WithLabelValues("down").Add(float64(cls.BytesDown))
	p.publish(ctx, id, lc, p.newEvent(event.KindConnClose, time.Now(), id, dest, func(e *event.Event) {
		e.ConnClose = cls
	}))
	log.Debug("connection closed", "bytes_up", cls.BytesUp, "bytes_down", cls.BytesDown, keyErr, cls.Error)
}

// clientFirstWait bounds the wait for the first bytes of a client whose
// destination the pool keeps connections to, before the proxy dials and
// watches the server too.
const clientFirstWait = 500 * time.Millisecond

// dialUpstream dials dst for one client connection.
func (p *Proxy) dialUpstream(ctx context.Context, dst netip.AddrPort) (*upstreamConn, error) {
	dctx, cancel := context.WithTimeout(ctx, p.opts.DialTimeout)
	defer cancel()
	c, err := p.dial(dctx, "tcp", dst.String())
	if err != nil {
		return nil, err
	}
	tc := c.(*net.TCPConn)
	return &upstreamConn{tcp: tc, forget: p.own.add(tc, dst)}, nil
}

// poolKey is the key of the pooled connections that may serve a client
// whose first bytes are res, zero when none may: plain HTTP/1, or TLS
// that is intercepted (for HTTP/1.1, which only the upstream's answer
// tells; an h2 connection is never put back).
func (p *Proxy) poolKey(dst netip.AddrPort, res sniff.Result) poolKey {
	switch res.Protocol {
	case sniff.HTTP1:
		return poolKey{dst: dst}
	case sniff.TLS:
		if ok, _ := p.tls.intercepts(res.Hello, dst.Addr()); ok {
			return poolKey{dst: dst, tls: true, name: tlsName(res.Hello, dst), alpn: strings.Join(offers(res.Hello.ALPN), ",")}
		}
	}
	return poolKey{}
}

// keep hands up to the pool under its key once its client is done with
// it, and reports whether it did.
func (p *Proxy) keep(lc *liveConn, up *upstreamConn) bool {
	if p.pool == nil || up.key == (poolKey{}) || p.isClosed() || !lc.releaseUpstream() {
		return false
	}
	// Idle, it is no longer a connection being set up (see ownConns).
	up.forgetOwn()
	p.pool.put(up)
	return true
}

// sniff classifies the client's protocol while watching the upstream: a
// server that speaks first (SMTP, MySQL, SSH) ends the wait at once, and
// whatever it sent is returned to be relayed first.
func (p *Proxy) sniff(ctx context.Context, client, up *net.TCPConn) (sniff.Result, []byte, error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type first struct {
		b   []byte
		err error
	}
	watch := make(chan first, 1)
	go func() {
		b := make([]byte, 4096)
		n, err := up.Read(b)
		if n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			cancel() // the server spoke (or closed): stop waiting for the client
		}
		watch <- first{b[:n], err}
	}()
	res, err := sniff.Peek(sctx, client, sniff.Options{Timeout: p.opts.SniffTimeout})
	// Stop the watcher and take what it read.
	_ = up.SetReadDeadline(time.Unix(1, 0))
	f := <-watch
	_ = up.SetReadDeadline(time.Time{})
	if len(f.b) > 0 && len(res.Prefix) == 0 {
		res.Protocol = sniff.TCP // server-first
	}
	return res, f.b, err
}

// relayRaw copies both ways until both sides closed, passing half-closes
// on. On *net.TCPConn io.Copy splices in the kernel. A failure of either
// direction closes both connections.
func relayRaw(client, up http1.Conn, clientPrefix, upPrefix []byte) (bytesUp, bytesDown int64, err error) {
	type result struct {
		n   int64
		err error
	}
	pipe := func(dst, src http1.Conn, prefix []byte, out chan<- result) {
		var n int64
		if len(prefix) > 0 {
			w, err := dst.Write(prefix)
			n += int64(w)
			if err != nil {
				out <- result{n, err}
				return
			}
		}
		c, err := io.Copy(dst, src)
		n += c
		if err == nil {
			err = dst.CloseWrite()
		}
		out <- result{n, err}
	}
	upc, downc := make(chan result, 1), make(chan result, 1)
	go pipe(up, client, clientPrefix, upc)
	go pipe(client, up, upPrefix, downc)
	var u, d result
	for range 2 {
		select {
		case u = <-upc:
			upc = nil
			if u.err != nil {
				_ = client.Close()
				_ = up.Close()
			}
		case d = <-downc:
			downc = nil
			if d.err != nil {
				_ = client.Close()
				_ = up.Close()
			}
		}
	}
	return u.n, d.n, errors.Join(relayErr("up", u.err), relayErr("down", d.err))
}

func relayErr(dir string, err error) error {
	if err == nil || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return fmt.Errorf("relay %s: %w", dir, err)
}

// refuse records a connection that is not relayed and closes the client
// with a reset, so that it sees a refusal rather than an empty reply.
func (p *Proxy) refuse(ctx context.Context, id string, lc *liveConn, dest *event.Destination, reason, detail string, start time.Time) {
	p.m.refused.WithLabelValues(reason).Inc()
	p.log.Warn("connection refused", keyConn, id, keyClient, lc.client.RemoteAddr().String(), keyReason, detail)
	_ = lc.client.SetLinger(0)
	_ = lc.client.Close()
	p.publish(ctx, id, lc, p.newEvent(event.KindConnOpen, start, id, dest, func(e *event.Event) {
		e.ConnOpen = &event.ConnOpen{Client: lc.client.RemoteAddr().String(), Refused: detail}
	}))
}

func (p *Proxy) newEvent(kind event.Kind, t time.Time, id string, dest *event.Destination, set func(*event.Event)) *event.Event {
	e := event.New(p.opts.Session, kind, t)
	e.Source = event.SourceSidecar
	e.Identity = p.opts.Identity
	e.Conn = id
	if dest != nil {
		d := *dest
		e.Dest = &d
	}
	set(e)
	return e
}

// publish hands e to the recorder. A failure is counted and logged; unless
// the proxy is fail-open it also cuts the connection, since what follows
// could not be recorded.
func (p *Proxy) publish(ctx context.Context, id string, lc *liveConn, e *event.Event) {
	if err := p.opts.Recorder.Publish(ctx, e); err != nil {
		p.recordFailed(id, lc, fmt.Errorf("publish %s: %w", e.Kind, err))
	}
}

func (p *Proxy) recordFailed(id string, lc *liveConn, err error) {
	p.m.recordErr.Inc()
	p.log.Error("recording", keyConn, id, keyErr, err)
	if !p.failOpen() && lc != nil {
		_ = lc.client.Close()
		lc.mu.Lock()
		if lc.up != nil {
			_ = lc.up.Close()
		}
		lc.mu.Unlock()
	}
}
