package origdst

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// ErrNotRedirected is returned when the kernel has no original destination
// for the connection: it reached the listener directly, not through the
// redirect rule.
var ErrNotRedirected = errors.New("origdst: connection was not redirected")

// Address family numbers in a struct sockaddr (same on every Linux arch).
const (
	afInet  = 2
	afInet6 = 10
)

// parseSockaddr decodes the struct sockaddr_in or sockaddr_in6 the kernel
// returns for SO_ORIGINAL_DST. The family is in host byte order; the port
// is in network byte order.
func parseSockaddr(b []byte, order binary.ByteOrder) (netip.AddrPort, error) {
	if len(b) < 2 {
		return netip.AddrPort{}, fmt.Errorf("origdst: sockaddr of %d bytes", len(b))
	}
	switch family := order.Uint16(b); family {
	case afInet:
		if len(b) < 8 {
			return netip.AddrPort{}, fmt.Errorf("origdst: sockaddr_in of %d bytes", len(b))
		}
		addr := netip.AddrFrom4([4]byte(b[4:8]))
		return netip.AddrPortFrom(addr, binary.BigEndian.Uint16(b[2:4])), nil
	case afInet6:
		if len(b) < 28 {
			return netip.AddrPort{}, fmt.Errorf("origdst: sockaddr_in6 of %d bytes", len(b))
		}
		addr := netip.AddrFrom16([16]byte(b[8:24]))
		if scope := order.Uint32(b[24:28]); scope != 0 && addr.IsLinkLocalUnicast() {
			addr = addr.WithZone(fmt.Sprint(scope))
		}
		return netip.AddrPortFrom(addr, binary.BigEndian.Uint16(b[2:4])), nil
	default:
		return netip.AddrPort{}, fmt.Errorf("origdst: unknown address family %d", family)
	}
}
