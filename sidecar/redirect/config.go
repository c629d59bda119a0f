package redirect

import (
	"errors"
	"fmt"
	"net/netip"
)

// Defaults shared by the sidecar, the webhook and chaperonectl run.
const (
	DefaultProxyPort uint16 = 15001
	DefaultAdminPort uint16 = 15020
	DefaultProxyUID  uint32 = 15137
	DefaultProxyGID  uint32 = 15137
)

// Config says which traffic is redirected to the sidecar and which is not.
// The zero value is not valid; start from DefaultConfig.
type Config struct {
	// ProxyPort is the sidecar listener every redirected connection reaches.
	ProxyPort uint16
	// ProxyUID and ProxyGID identify the sidecar's own sockets, which are
	// never redirected. Neither may be 0: that would exempt a root agent.
	ProxyUID uint32
	ProxyGID uint32
	// ExcludeCIDRs are destinations reached directly. IPv6 prefixes are
	// ignored when IPv6 is false.
	ExcludeCIDRs []netip.Prefix
	// ExcludePorts are TCP destination ports reached directly.
	ExcludePorts []uint16
	// ExcludeUIDs are further socket owners whose traffic is not redirected.
	ExcludeUIDs []uint32
	// AdminPort is the sidecar's admin/health port; connections to it are
	// never redirected. 0 means none.
	AdminPort uint16
	// IPv6 redirects IPv6 TCP as well. When false only IPv4 is redirected and
	// IPv6 traffic passes untouched, so only disable it where pods have no
	// IPv6 route.
	IPv6 bool
}

// DefaultConfig returns the configuration a pod gets without overrides.
func DefaultConfig() Config {
	return Config{
		ProxyPort: DefaultProxyPort,
		ProxyUID:  DefaultProxyUID,
		ProxyGID:  DefaultProxyGID,
		AdminPort: DefaultAdminPort,
		IPv6:      true,
	}
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.ProxyPort == 0 {
		errs = append(errs, errors.New("proxy port must not be 0"))
	}
	if c.ProxyUID == 0 {
		errs = append(errs, errors.New("proxy uid must not be 0 (root traffic would bypass the sidecar)"))
	}
	if c.ProxyGID == 0 {
		errs = append(errs, errors.New("proxy gid must not be 0 (root traffic would bypass the sidecar)"))
	}
	if c.AdminPort != 0 && c.AdminPort == c.ProxyPort {
		errs = append(errs, fmt.Errorf("admin port %d equals the proxy port", c.AdminPort))
	}
	for _, p := range c.ExcludeCIDRs {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("exclude cidr %v is not a valid prefix", p))
			continue
		}
		if p.Addr().Is4In6() {
			errs = append(errs, fmt.Errorf("exclude cidr %v: use the plain IPv4 form", p))
		}
		if p.Bits() == 0 {
			errs = append(errs, fmt.Errorf("exclude cidr %v would disable redirection", p))
		}
	}
	for _, port := range c.ExcludePorts {
		switch port {
		case 0:
			errs = append(errs, errors.New("exclude port must not be 0"))
		case c.ProxyPort:
			errs = append(errs, fmt.Errorf("exclude port %d is the proxy port", port))
		}
	}
	for _, uid := range c.ExcludeUIDs {
		if uid == 0 {
			errs = append(errs, errors.New("exclude uid must not be 0 (root traffic would bypass the sidecar)"))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("redirect config: %w", errors.Join(errs...))
	}
	return nil
}
