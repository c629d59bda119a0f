package origdst

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// soOriginalDst is SO_ORIGINAL_DST (linux/netfilter_ipv4.h) and
// IP6T_SO_ORIGINAL_DST (linux/netfilter_ipv6/ip6_tables.h); both are 80.
const soOriginalDst = 80

// Get returns the original destination of a connection accepted from a
// listener that nat REDIRECT rules send traffic to. IPv4 connections on a
// dual-stack listener (v4-mapped local address) are looked up as IPv4.
func Get(conn *net.TCPConn) (netip.AddrPort, error) {
	local, ok := conn.LocalAddr().(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("origdst: local address %v is not TCP", conn.LocalAddr())
	}
	level := unix.SOL_IP
	if ip := local.AddrPort().Addr(); ip.Is6() && !ip.Is4In6() {
		level = unix.SOL_IPV6
	}
	raw, err := conn.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("origdst: %w", err)
	}
	var (
		buf    [unix.SizeofSockaddrInet6]byte
		n      = uint32(len(buf))
		sysErr error
	)
	ctrlErr := raw.Control(func(fd uintptr) {
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, uintptr(level), soOriginalDst,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
		if errno != 0 {
			sysErr = errno
		}
	})
	if ctrlErr != nil {
		return netip.AddrPort{}, fmt.Errorf("origdst: %w", ctrlErr)
	}
	if sysErr != nil {
		if errors.Is(sysErr, unix.ENOENT) {
			return netip.AddrPort{}, ErrNotRedirected
		}
		return netip.AddrPort{}, fmt.Errorf("origdst: getsockopt: %w", sysErr)
	}
	return parseSockaddr(buf[:n], binary.NativeEndian)
}
