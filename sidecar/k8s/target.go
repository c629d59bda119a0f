package k8s

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Environment variables a pod gets for the API server's service.
const (
	EnvServiceHost = "KUBERNETES_SERVICE_HOST"
	EnvServicePort = "KUBERNETES_SERVICE_PORT"
)

// serviceNames are the names the API server's in-cluster service answers
// to; a request for one of them goes to the API server.
var serviceNames = []string{
	"kubernetes",
	"kubernetes.default",
	"kubernetes.default.svc",
}

// Target recognises connections to the API server. The zero Target
// matches nothing.
type Target struct {
	host string // IP or name, lowercased
	port string
	addr netip.AddrPort // set when host is an IP
}

// ParseTarget parses the API server address "host:port" (an IP or a DNS
// name; IPv6 in brackets). An empty address gives the zero Target.
func ParseTarget(addr string) (Target, error) {
	if addr == "" {
		return Target{}, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return Target{}, fmt.Errorf("kube api address %q: %w", addr, err)
	}
	if host == "" || port == "" {
		return Target{}, fmt.Errorf("kube api address %q: %w", addr, errors.New("host and port required"))
	}
	t := Target{host: strings.ToLower(host), port: port}
	if a, err := netip.ParseAddr(host); err == nil {
		p, err := netip.ParseAddrPort(net.JoinHostPort(a.Unmap().String(), port))
		if err != nil {
			return Target{}, fmt.Errorf("kube api address %q: %w", addr, err)
		}
		t.addr = p
	}
	return t, nil
}

// TargetFromEnv returns the address a pod's environment names for the API
// server (KUBERNETES_SERVICE_HOST and _PORT), "" when it names none.
func TargetFromEnv(getenv func(string) string) string {
	host, port := getenv(EnvServiceHost), getenv(EnvServicePort)
	if host == "" {
		return ""
	}
	if port == "" {
		port = "443"
	}
	return net.JoinHostPort(host, port)
}

// IsZero reports whether t matches nothing.
func (t Target) IsZero() bool { return t.host == "" }

// String returns the address t was parsed from.
func (t Target) String() string {
	if t.IsZero() {
		return ""
	}
	return net.JoinHostPort(t.host, t.port)
}

// Matches reports whether a connection to dst, whose TLS server name or
// HTTP Host is name ("" when unknown; it may carry a port), goes to the
// API server: dst is the API server's address, or name is its host or one
// of its in-cluster service names on the API server's port.
func (t Target) Matches(dst netip.AddrPort, name string) bool {
	if t.IsZero() {
		return false
	}
	if t.addr.IsValid() && dst.IsValid() && netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port()) == t.addr {
		return true
	}
	if name == "" {
		return false
	}
	host, port := name, ""
	if h, p, err := net.SplitHostPort(name); err == nil {
		host, port = h, p
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if port == "" && dst.IsValid() {
		port = fmt.Sprint(dst.Port())
	}
	if port != "" && port != t.port && (port != "443" || !isServiceName(host)) {
		return false
	}
	return host == t.host || isServiceName(host)
}

// isServiceName reports whether host names the API server's service:
// kubernetes, kubernetes.default, kubernetes.default.svc, or the latter
// with a cluster domain.
func isServiceName(host string) bool {
	for _, n := range serviceNames {
		if host == n {
			return true
		}
	}
	return strings.HasPrefix(host, "kubernetes.default.svc.")
}
