package proxy

import (
	"context"
	"net"
	"net/netip"
	"sync"
)

// ownConns holds the local addresses of the proxy's upstream connections.
//
// The redirect rules exempt the sidecar's own traffic, but only when
// conntrack creates a new entry for it: if the kernel gives an upstream
// dial a source port that an agent's connection to the same destination
// used moments before, and that connection's conntrack entry (with its
// redirect) is still around, the dial is sent to the sidecar's own
// listener. Such a connection arrives with the dial's local address as its
// client address; handle relays it raw to the destination, so a loop costs
// one more hop, is recorded once (by the dialing side), and a TLS dial
// still reaches the real upstream rather than the sidecar's own leaf.
type ownConns struct {
	mu sync.Mutex
	m  map[netip.AddrPort]struct{}
}

// add records c's local address until the returned function is called.
func (o *ownConns) add(c net.Conn) (remove func()) {
	a, ok := addrPort(c.LocalAddr())
	if !ok {
		return func() {}
	}
	o.mu.Lock()
	if o.m == nil {
		o.m = map[netip.AddrPort]struct{}{}
	}
	o.m[a] = struct{}{}
	o.mu.Unlock()
	return func() {
		o.mu.Lock()
		delete(o.m, a)
		o.mu.Unlock()
	}
}

// has reports whether addr, a client's address, is the local address of
// one of the proxy's upstream connections.
func (o *ownConns) has(addr net.Addr) bool {
	a, ok := addrPort(addr)
	if !ok {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	_, found := o.m[a]
	return found
}

func addrPort(a net.Addr) (netip.AddrPort, bool) {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}, false
	}
	ap := ta.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}

// dialFunc dials an upstream; tests replace net.Dialer's to make loops.
type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)
