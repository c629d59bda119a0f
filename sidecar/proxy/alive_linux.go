package proxy

import (
	"errors"
	"net"
	"syscall"
)

// alive reports whether an idle connection is still open with nothing to
// read: a peek that would block. EOF (the upstream closed it) or bytes
// nobody asked for (a close alert, say) make it unfit for reuse.
func alive(c *net.TCPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ok = errors.Is(rerr, syscall.EAGAIN)
		return true
	})
	return err == nil && ok
}
