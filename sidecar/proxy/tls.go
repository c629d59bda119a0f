package proxy

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/sidecar/http1"
	"github.com/chaperone-dev/chaperone/sidecar/sniff"
)

// Minter mints the certificate shown to a client that asked for name (a
// DNS name or an IP address); *certs.Authority is one.
type Minter interface {
	Leaf(ctx context.Context, name string) (*tls.Certificate, error)
}

// TLSOptions turn on TLS interception.
type TLSOptions struct {
	// Minter mints the leaves clients are shown. Required.
	Minter Minter
	// RootCAs verify upstream servers: the system roots plus the extra
	// roots (certs.RootPool). Nil uses the system roots only.
	RootCAs *x509.CertPool
	// NoIntercept matches the destinations passed through.
	NoIntercept *Bypass
}

// ALPN protocol names.
const (
	alpnHTTP1 = "http/1.1"
	alpnH2    = "h2"
)

// Destination protocols of intercepted and HTTP/2 connections.
const (
	protoHTTPS = "https"
	protoTLS   = "tls"
	protoH2    = "h2"
	protoH2C   = "h2c"
)

// TLS modes, the values of the tls counter's mode label.
const (
	modeIntercepted = "intercepted"
	modePassthrough = "passthrough"
	modeRefused     = "refused"
)

const reasonTLS = "tls"

// noProtocol is an ALPN protocol no client offers: a handshake that must
// fail with the no_application_protocol alert offers only it.
const noProtocol = "x-chaperone-none"

// tlsState is the proxy's interception state, nil when it is off.
type tlsState struct {
	opts     TLSOptions
	sessions tls.ClientSessionCache
	// server is cloned for each client handshake; its session ticket key
	// is fixed so that clients can resume across connections.
	server *tls.Config
}

func newTLSState(o *TLSOptions) (*tlsState, error) {
	if o == nil {
		return nil, nil
	}
	if o.Minter == nil {
		return nil, errors.New("tls: no minter")
	}
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		return nil, fmt.Errorf("tls: session ticket key: %w", err)
	}
	server := &tls.Config{MinVersion: tls.VersionTLS12}
	server.SetSessionTicketKeys([][32]byte{key})
	return &tlsState{opts: *o, sessions: tls.NewLRUClientSessionCache(1024), server: server}, nil
}

// offers filters the client's ALPN offers to what may be offered
// upstream: HTTP/1.1 and HTTP/2 are recorded, other protocols are relayed
// raw after interception.
func offers(client []string) []string {
	return slices.DeleteFunc(slices.Clone(client), func(p string) bool { return p == "" })
}

// Key exchanges crypto/tls implements: hybrid post-quantum ones (TLS 1.3
// only) and classical ones.
var (
	hybridGroups    = []tls.CurveID{tls.X25519MLKEM768, tls.SecP256r1MLKEM768, tls.SecP384r1MLKEM1024}
	classicalGroups = []tls.CurveID{tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521}
)

// groups picks the key exchanges offered upstream: those of the client's
// that crypto/tls implements, in the client's order, so that the upstream
// sees the key exchanges it would have seen without the sidecar, and a
// client that offers no post-quantum hybrid does not pay for one on the
// second leg. Nil (the crypto/tls default) when the client offered no
// classical group, which a TLS 1.2 upstream would need.
func groups(client []uint16) []tls.CurveID {
	var out []tls.CurveID
	classical := false
	for _, g := range client {
		id := tls.CurveID(g)
		known := slices.Contains(hybridGroups, id)
		if slices.Contains(classicalGroups, id) {
			known, classical = true, true
		}
		if known && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	if !classical {
		return nil
	}
	return out
}

// intercepts reports whether a TLS connection to dst whose ClientHello is h
// is intercepted, and if not, why.
func (s *tlsState) intercepts(h sniff.Hello, dst netip.Addr) (bool, string) {
	if s == nil {
		return false, "interception off"
	}
	if s.opts.NoIntercept.Match(h.SNI, dst) {
		return false, "no-intercept"
	}
	if len(h.ALPN) > 0 && len(offers(h.ALPN)) == 0 {
		// Offering the upstream nothing would make it speak no ALPN, and a
		// client that offered only h2 would then fail.
		return false, "client offers no recordable protocol"
	}
	return true, ""
}

// tlsName is the name an intercepted connection's leaf is minted for and
// its upstream verified against: the SNI, else the destination's IP.
func tlsName(h sniff.Hello, dst netip.AddrPort) string {
	if h.SNI != "" {
		return h.SNI
	}
	return dst.Addr().Unmap().String()
}

// intercept terminates the client's TLS with a minted leaf after a
// verified handshake with the upstream (none when up is a kept TLS
// connection), and records the plaintext. It reports whether up went back
// to the pool.
func (p *Proxy) intercept(ctx context.Context, id string, lc *liveConn, log *slog.Logger, dst netip.AddrPort, dest *event.Destination, res sniff.Result, up *upstreamConn, start time.Time) bool {
	client := lc.client
	name := tlsName(res.Hello, dst)
	info := &event.TLSInfo{SNI: res.Hello.SNI, ALPN: res.Hello.ALPN}
	hctx, cancel := context.WithTimeout(ctx, p.opts.DialTimeout)
	defer cancel()

	if up.tls == nil {
		tup := tls.Client(up.tcp, &tls.Config{
			ServerName:         name,
			RootCAs:            p.tls.opts.RootCAs,
			NextProtos:         offers(res.Hello.ALPN),
			CurvePreferences:   groups(res.Hello.Groups),
			MinVersion:         tls.VersionTLS12,
			ClientSessionCache: p.tls.sessions,
		})
		if err := tup.HandshakeContext(hctx); err != nil {
			p.refuseTLS(ctx, id, lc, dest, info, res, fmt.Sprintf("upstream tls: %v", err), start)
			return false
		}
		ust := tup.ConnectionState()
		up.tls = tup
		up.version = tls.VersionName(ust.Version)
		up.cipher = tls.CipherSuiteName(ust.CipherSuite)
		up.proto = ust.NegotiatedProtocol
	}
	tup := up.tls
	info.Version, info.Cipher, info.Protocol = up.version, up.cipher, up.proto

	leaf, err := p.tls.opts.Minter.Leaf(hctx, name)
	if err != nil {
		p.refuseTLS(ctx, id, lc, dest, info, res, fmt.Sprintf("mint leaf: %v", err), start)
		return false
	}
	scfg := p.tls.server.Clone()
	scfg.Certificates = []tls.Certificate{*leaf}
	if up.proto != "" {
		scfg.NextProtos = []string{up.proto}
	}
	tcl := tls.Server(&prefixConn{TCPConn: client, prefix: res.Prefix}, scfg)
	if err := tcl.HandshakeContext(hctx); err != nil {
		// Most often the client does not trust the sidecar's CA.
		p.m.tls.WithLabelValues(modeRefused).Inc()
		p.m.refused.WithLabelValues(reasonTLS).Inc()
		detail := fmt.Sprintf("client tls: %v", err)
		log.Warn("client handshake", keyErr, err)
		_ = client.Close()
		p.publish(ctx, id, lc, p.newEvent(event.KindConnOpen, start, id, dest, func(e *event.Event) {
			e.ConnOpen = &event.ConnOpen{Client: client.RemoteAddr().String(), Refused: detail, TLS: info}
		}))
		return false
	}
	info.Intercepted = true
	cancel()

	switch up.proto {
	case "", alpnHTTP1:
		dest.Protocol = protoHTTPS
	case alpnH2:
		dest.Protocol = protoH2
	default:
		dest.Protocol = protoTLS
	}
	if dest.Protocol == protoTLS && !p.gateConn(ctx, id, lc, dst, dest, start) {
		_ = tcl.Close()
		return false
	}
	p.m.conns.WithLabelValues(dest.Protocol).Inc()
	p.m.tls.WithLabelValues(modeIntercepted).Inc()
	p.publish(ctx, id, lc, p.newEvent(event.KindConnOpen, start, id, dest, func(e *event.Event) {
		e.ConnOpen = &event.ConnOpen{Client: client.RemoteAddr().String(), TLS: info}
	}))
	log.Debug("connection open", keyProto, dest.Protocol, "tls_version", info.Version, "alpn", info.Protocol)

	cls := &event.ConnClose{TLS: info}
	var errs []error
	kept := false
	switch dest.Protocol {
	case protoHTTPS:
		sink := p.newSink(ctx, id, lc, dst, dest)
		st := p.http1.Relay(sink.ctx, http1.Pair{Client: tcl, Upstream: tup, Reuse: p.pool != nil}, sink)
		cls.BytesUp, cls.BytesDown = st.BytesUp, st.BytesDown
		errs = append(errs, st.Err, st.ParseErr)
		kept = st.Reusable && p.keep(lc, up)
	case protoH2:
		sink := p.newSink(ctx, id, lc, dst, dest)
		st := p.http2.Serve(sink.ctx, tcl, tup, "https", name, sink)
		cls.BytesUp, cls.BytesDown = st.BytesUp, st.BytesDown
		errs = append(errs, st.Err)
	default:
		u, d, rerr := relayRaw(tcl, tup, nil, nil)
		cls.BytesUp, cls.BytesDown = u, d
		errs = append(errs, rerr)
	}
	_ = tcl.Close()
	p.finish(ctx, id, lc, log, dest, cls, start, errs)
	return kept
}

// refuseTLS records a TLS connection that is not relayed and ends the
// client's handshake with an alert, so that the client reports a TLS
// error rather than a reset.
func (p *Proxy) refuseTLS(ctx context.Context, id string, lc *liveConn, dest *event.Destination, info *event.TLSInfo, res sniff.Result, detail string, start time.Time) {
	p.m.refused.WithLabelValues(reasonTLS).Inc()
	p.m.tls.WithLabelValues(modeRefused).Inc()
	p.log.Warn("connection refused", keyConn, id, keyClient, lc.client.RemoteAddr().String(), keyDest, dest.Addr, keyReason, detail)
	refusal := errors.New(detail)
	cfg := &tls.Config{
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return nil, refusal },
	}
	if strings.Contains(detail, "no application protocol") {
		// The upstream speaks none of the client's protocols: tell the
		// client so, with the same alert, as a pass-through would have.
		cfg = &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{noProtocol}}
	}
	alert := tls.Server(&prefixConn{TCPConn: lc.client, prefix: res.Prefix}, cfg)
	actx, cancel := context.WithTimeout(ctx, time.Second)
	_ = alert.HandshakeContext(actx) // sends the alert and fails
	cancel()
	_ = lc.client.Close()
	p.publish(ctx, id, lc, p.newEvent(event.KindConnOpen, start, id, dest, func(e *event.Event) {
		e.ConnOpen = &event.ConnOpen{Client: lc.client.RemoteAddr().String(), Refused: detail, TLS: info}
	}))
}

// prefixConn replays bytes already read from a connection (the sniffed
// ClientHello) before reading on.
type prefixConn struct {
	*net.TCPConn
	prefix []byte
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(b, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.TCPConn.Read(b)
}
