package proxy

import (
	"crypto/tls"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of the upstream pool.
const (
	// DefaultUpstreamIdle is how long an idle upstream connection is kept
	// for the next client connection to the same destination.
	DefaultUpstreamIdle = 30 * time.Second
	// maxIdlePerKey bounds the idle connections kept per destination (and
	// TLS name and ALPN offer), and maxIdle all of them: each holds a file
	// descriptor, and a TLS one its buffers, in a process kept small.
	maxIdlePerKey = 16
	maxIdle       = 64
)

// poolKey says which client connections an upstream connection may serve:
// the same original destination, and for intercepted TLS the same name
// (the one verified) and the same ALPN offer.
type poolKey struct {
	dst  netip.AddrPort
	tls  bool
	name string
	alpn string
}

// upstreamConn is a connection to an original destination: plain TCP, or
// TLS set up by the sidecar (then tls, version, cipher and proto are set).
type upstreamConn struct {
	tcp *net.TCPConn
	tls *tls.Conn
	// version, cipher and proto describe the TLS connection for records.
	version, cipher, proto string
	// forget, until called, takes the connection's local address off the
	// proxy's own connections (see ownConns).
	forget func()
	// key is the pool key of the client connections it may serve (set
	// once the client was sniffed; zero: none, it is not kept).
	key   poolKey
	timer *time.Timer
}

// forgetOwn takes u off the proxy's own connections, once.
func (u *upstreamConn) forgetOwn() {
	if u.forget != nil {
		u.forget()
		u.forget = nil
	}
}

func (u *upstreamConn) close() {
	if u.tls != nil {
		_ = u.tls.Close()
	} else {
		_ = u.tcp.Close()
	}
	u.forgetOwn()
}

// upstreamPool keeps the HTTP/1.1 upstream connections that client
// connections left idle, for the next client connection to the same
// destination, as a connection-pooling proxy does: a client that opens a
// connection per request (curl in a loop, "Connection: close") then costs
// the upstream no new TCP and TLS handshake. Connections are taken most
// recent first, checked for a close by the upstream before they are
// handed out, and closed after idle without use.
type upstreamPool struct {
	idleTimeout time.Duration
	idleGauge   prometheus.Gauge // how many are kept now

	mu     sync.Mutex
	idle   map[poolKey][]*upstreamConn
	dests  map[netip.AddrPort]int // idle connections per destination
	total  int
	closed bool
}

func newUpstreamPool(idle time.Duration, gauge prometheus.Gauge) *upstreamPool {
	if idle <= 0 {
		return nil
	}
	return &upstreamPool{idleTimeout: idle, idleGauge: gauge, idle: map[poolKey][]*upstreamConn{}, dests: map[netip.AddrPort]int{}}
}

// knows reports whether connections to dst are kept: dst then speaks
// HTTP/1.1 or TLS, client first, so its clients can be sniffed before a
// connection is chosen.
func (p *upstreamPool) knows(dst netip.AddrPort) bool {
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dests[dst] > 0
}

// get returns an idle connection for key that the upstream has not
// closed, or nil.
func (p *upstreamPool) get(key poolKey) *upstreamConn {
	if p == nil {
		return nil
	}
	for {
		p.mu.Lock()
		list := p.idle[key]
		if len(list) == 0 {
			p.mu.Unlock()
			return nil
		}
		u := list[len(list)-1]
		p.take(u, len(list)-1)
		p.mu.Unlock()
		u.timer.Stop()
		if alive(u.tcp) {
			return u
		}
		u.close()
	}
}

// take removes the i-th idle connection of u's key; p.mu is held.
func (p *upstreamPool) take(u *upstreamConn, i int) {
	list := p.idle[u.key]
	list = append(list[:i], list[i+1:]...)
	if len(list) == 0 {
		delete(p.idle, u.key)
	} else {
		p.idle[u.key] = list
	}
	if p.dests[u.key.dst]--; p.dests[u.key.dst] <= 0 {
		delete(p.dests, u.key.dst)
	}
	p.total--
	p.idleGauge.Set(float64(p.total))
}

// put keeps u for later, or closes it when the pool is full or closed.
func (p *upstreamPool) put(u *upstreamConn) {
	if p == nil {
		u.close()
		return
	}
	p.mu.Lock()
	if p.closed || len(p.idle[u.key]) >= maxIdlePerKey || p.total >= maxIdle {
		p.mu.Unlock()
		u.close()
		return
	}
	p.idle[u.key] = append(p.idle[u.key], u)
	p.dests[u.key.dst]++
	p.total++
	p.idleGauge.Set(float64(p.total))
	u.timer = time.AfterFunc(p.idleTimeout, func() { p.expire(u) })
	p.mu.Unlock()
}

// expire closes u if it is still idle.
func (p *upstreamPool) expire(u *upstreamConn) {
	p.mu.Lock()
	for i, v := range p.idle[u.key] {
		if v == u {
			p.take(u, i)
			p.mu.Unlock()
			u.close()
			return
		}
	}
	p.mu.Unlock()
}

// closeAll closes every idle connection; later puts close theirs.
func (p *upstreamPool) closeAll() {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.closed = true
	var all []*upstreamConn
	for _, list := range p.idle {
		all = append(all, list...)
	}
	p.idle = map[poolKey][]*upstreamConn{}
	p.dests = map[netip.AddrPort]int{}
	p.total = 0
	p.idleGauge.Set(0)
	p.mu.Unlock()
	for _, u := range all {
		u.timer.Stop()
		u.close()
	}
}
