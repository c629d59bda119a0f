package proxy

import (
	"fmt"
	"net/netip"
	"strings"
)

// Bypass matches the TLS destinations that are passed through without
// interception: their traffic is relayed raw and recorded as TLS metadata
// only. Create it with ParseBypass.
type Bypass struct {
	all      bool
	exact    map[string]bool
	suffixes []string // ".example.com" for "*.example.com"
	prefixes []netip.Prefix
}

// ParseBypass reads --no-intercept patterns: a host name ("api.example.com",
// matched against the SNI), a wildcard ("*.example.com": any name under
// example.com, not example.com itself), an IP address or a CIDR ("10.0.0.0/8",
// matched against the original destination), or "*" for everything.
func ParseBypass(patterns []string) (*Bypass, error) {
	b := &Bypass{exact: map[string]bool{}}
	for _, raw := range patterns {
		p := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(raw), "."))
		switch {
		case p == "":
			return nil, fmt.Errorf("no-intercept: empty pattern")
		case p == "*":
			b.all = true
		case strings.Contains(p, "/"):
			pfx, err := netip.ParsePrefix(p)
			if err != nil {
				return nil, fmt.Errorf("no-intercept %q: %w", raw, err)
			}
			b.prefixes = append(b.prefixes, pfx.Masked())
		case strings.HasPrefix(p, "*."):
			rest := p[1:]
			if strings.Contains(rest[1:], "*") || len(rest) < 2 {
				return nil, fmt.Errorf("no-intercept %q: a wildcard may only be the first label", raw)
			}
			b.suffixes = append(b.suffixes, rest)
		case strings.Contains(p, "*"):
			return nil, fmt.Errorf("no-intercept %q: a wildcard may only be the first label", raw)
		default:
			if ip, err := netip.ParseAddr(p); err == nil {
				b.prefixes = append(b.prefixes, netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()))
				continue
			}
			b.exact[p] = true
		}
	}
	return b, nil
}

// Match reports whether a connection to addr whose client asked for host
// (the SNI, possibly empty) is passed through. A nil Bypass matches nothing.
func (b *Bypass) Match(host string, addr netip.Addr) bool {
	if b == nil {
		return false
	}
	if b.all {
		return true
	}
	addr = addr.Unmap()
	for _, p := range b.prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "" {
		return false
	}
	if b.exact[host] {
		return true
	}
	for _, s := range b.suffixes {
		if strings.HasSuffix(host, s) {
			return true
		}
	}
	return false
}
