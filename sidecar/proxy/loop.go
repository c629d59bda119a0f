package proxy

import (
	"context"
	"net"
	"net/netip"
	"sync"
)

// ownConns holds the local addresses of the proxy's upstream connections
// being dialed and used for a client, each with the destination it was
// dialed for.
//
// The redirect rules exempt the sidecar's own traffic, but only when
// conntrack creates a new entry for it: if the kernel gives an upstream
// dial a source port that an agent's connection to the same destination
// used moments before, and that connection's conntrack entry (with its
// redirect) is still around, the dial is sent to the sidecar's own
// listener. Such a connection arrives with the dial's local address as its
// client address and the dial's destination as its original destination;
// handle relays it raw to the destination, so a loop costs one more hop,
// is recorded once (by the dialing side), and a TLS dial still reaches the
// real upstream rather than the sidecar's own leaf.
//
// Both addresses must match: the kernel gives one local port to
// connections to different destinations, so a client of the proxy may
// well have the local address of an upstream connection to elsewhere.
// Connections kept idle for reuse are not held here: a loop happens when
// a connection is set up, and an idle one was set up long ago.
type ownConns struct {
	mu sync.Mutex
	m  map[ownConn]int // how many connections have the pair
}

// ownConn is an upstream connection's local address and the destination
// it was dialed for.
type ownConn struct{ local, dst netip.AddrPort }

// add records c's local address and dst until the returned function is
// called.
func (o *ownConns) add(c net.Conn, dst netip.AddrPort) (remove func()) {
	a, ok := addrPort(c.LocalAddr())
	if !ok {
		return func() {}
	}
	k := ownConn{local: a, dst: unmapped(dst)}
	o.mu.Lock()
	if o.m == nil {
		o.m = map[ownConn]int{}
	}
	o.m[k]++
	o.mu.Unlock()
	return func() {
		o.mu.Lock()
		if o.m[k]--; o.m[k] <= 0 {
			delete(o.m, k)
		}
		o.mu.Unlock()
	}
}

// has reports whether a client from addr whose original destination is
// dst is one of the proxy's own upstream connections come back.
func (o *ownConns) has(addr net.Addr, dst netip.AddrPort) bool {
	a, ok := addrPort(addr)
	if !ok {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.m[ownConn{local: a, dst: unmapped(dst)}] > 0
}

func unmapped(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
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
