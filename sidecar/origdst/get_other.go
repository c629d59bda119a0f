//go:build !linux

package origdst

import (
	"errors"
	"net"
	"net/netip"
)

// Get is only available on Linux, where netfilter records the original
// destination of redirected connections.
func Get(conn *net.TCPConn) (netip.AddrPort, error) {
	return netip.AddrPort{}, errors.New("origdst: original destinations need Linux netfilter")
}
