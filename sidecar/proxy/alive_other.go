//go:build !linux

package proxy

import "net"

// alive cannot peek without blocking here: an idle connection is taken as
// open, and a closed one fails the request on it.
func alive(*net.TCPConn) bool { return true }
