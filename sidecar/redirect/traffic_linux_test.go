package redirect

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/chaperone-dev/chaperone/pkg/sandbox"
	"github.com/chaperone-dev/chaperone/sidecar/origdst"
)

// TestRedirectTraffic sends real connections from processes inside a
// sandbox and checks which ones the rules hand to a stand-in proxy on the
// proxy port, and that the proxy recovers their original destination.
func TestRedirectTraffic(t *testing.T) {
	sb := newSandbox(t)
	bin := testBinary(t)

	// Real servers on the host side of the veth pair.
	hostLn := listen(t, netip.AddrPortFrom(sb.HostIP(), 0).String())
	serve(hostLn, fixed("direct"))
	host6Ln := listen(t, netip.AddrPortFrom(sb.HostIP6(), 0).String())
	serve(host6Ln, fixed("direct"))
	excludedLn := listen(t, netip.AddrPortFrom(sb.HostIP(), 0).String())
	serve(excludedLn, fixed("direct"))
	excludedPort := uint16(excludedLn.Addr().(*net.TCPAddr).Port)

	// Inside: a stand-in proxy on the proxy port and a loopback service.
	cfg := DefaultConfig()
	cfg.ExcludePorts = []uint16{excludedPort}
	var proxyLn, loLn, ownLn net.Listener
	err := sb.InNamespace(func() error {
		var err error
		if proxyLn, err = net.Listen("tcp", ":"+strconv.Itoa(int(cfg.ProxyPort))); err != nil {
			return err
		}
		if loLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return err
		}
		if ownLn, err = net.Listen("tcp", netip.AddrPortFrom(sb.NSIP(), 0).String()); err != nil {
			return err
		}
		_, err = Install(t.Context(), cfg)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, ln := range []net.Listener{proxyLn, loLn, ownLn} {
		t.Cleanup(func() { ln.Close() })
	}
	serve(proxyLn, func(c *net.TCPConn) string {
		dst, err := origdst.Get(c)
		if err != nil {
			return "proxy error: " + err.Error()
		}
		return "proxy " + dst.String()
	})
	serve(loLn, fixed("loopback"))
	serve(ownLn, fixed("own address"))

	proxyUID, proxyGID, other := cfg.ProxyUID, cfg.ProxyGID, uint32(1000)
	tests := []struct {
		name string
		addr net.Addr
		opts sandbox.ExecOptions
		want string
	}{
		{"ipv4 redirected", hostLn.Addr(), sandbox.ExecOptions{}, "proxy " + hostLn.Addr().String()},
		{"ipv6 redirected", host6Ln.Addr(), sandbox.ExecOptions{}, "proxy " + host6Ln.Addr().String()},
		{"other user redirected", hostLn.Addr(), sandbox.ExecOptions{UID: &other}, "proxy " + hostLn.Addr().String()},
		{"proxy uid direct", hostLn.Addr(), sandbox.ExecOptions{UID: &proxyUID, GID: &other}, "direct"},
		{"proxy uid direct ipv6", host6Ln.Addr(), sandbox.ExecOptions{UID: &proxyUID, GID: &other}, "direct"},
		{"proxy gid direct", hostLn.Addr(), sandbox.ExecOptions{UID: &other, GID: &proxyGID}, "direct"},
		{"loopback direct", loLn.Addr(), sandbox.ExecOptions{}, "loopback"},
		{"own address direct", ownLn.Addr(), sandbox.ExecOptions{}, "own address"},
		{"excluded port direct", excludedLn.Addr(), sandbox.ExecOptions{}, "direct"},
		{"root without net admin redirected", hostLn.Addr(), sandbox.ExecOptions{DropNetAdmin: true}, "proxy " + hostLn.Addr().String()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := child(t, sb, bin, "dial "+tt.addr.String(), tt.opts)
			if code != 0 || out != tt.want {
				t.Fatalf("dial %v = %q (exit %d, stderr %q), want %q", tt.addr, out, code, errOut, tt.want)
			}
		})
	}

	t.Run("excluded cidr after reinstall", func(t *testing.T) {
		cfg := cfg
		cfg.ExcludeCIDRs = []netip.Prefix{netip.PrefixFrom(sb.HostIP(), 32)}
		if err := sb.InNamespace(func() error { _, err := Install(t.Context(), cfg); return err }); err != nil {
			t.Fatal(err)
		}
		for addr, want := range map[string]string{
			hostLn.Addr().String():  "direct",
			host6Ln.Addr().String(): "proxy " + host6Ln.Addr().String(),
		} {
			out, errOut, code := child(t, sb, bin, "dial "+addr, sandbox.ExecOptions{})
			if code != 0 || out != want {
				t.Errorf("dial %s = %q (exit %d, stderr %q), want %q", addr, out, code, errOut, want)
			}
		}
	})

	t.Run("proxy down refuses instead of bypassing", func(t *testing.T) {
		if err := proxyLn.Close(); err != nil {
			t.Fatal(err)
		}
		for _, addr := range []net.Addr{host6Ln.Addr(), excludedLn.Addr()} {
			out, errOut, code := child(t, sb, bin, "dial "+addr.String(), sandbox.ExecOptions{})
			switch addr {
			case excludedLn.Addr():
				if code != 0 || out != "direct" {
					t.Errorf("excluded port with proxy down = %q (exit %d, %q), want direct", out, code, errOut)
				}
			default:
				if code != exitRefused || !strings.Contains(errOut, "connection refused") {
					t.Errorf("dial %v with proxy down = %q (exit %d, stderr %q), want connection refused", addr, out, code, errOut)
				}
			}
		}
	})
}

// TestDropNetAdminProtectsRules checks that an agent running as root with
// DropNetAdmin cannot remove the redirect rules, while a full root can.
func TestDropNetAdminProtectsRules(t *testing.T) {
	sb := newSandbox(t)
	bin := testBinary(t)
	installed := func() bool {
		var ok bool
		if err := sb.InNamespace(func() error {
			var err error
			ok, err = Installed(t.Context())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if err := sb.InNamespace(func() error { _, err := Install(t.Context(), DefaultConfig()); return err }); err != nil {
		t.Fatal(err)
	}

	_, errOut, code := child(t, sb, bin, "uninstall", sandbox.ExecOptions{DropNetAdmin: true})
	if code != exitEPERM {
		t.Fatalf("uninstall without CAP_NET_ADMIN: exit %d, stderr %q; want EPERM (exit %d)", code, errOut, exitEPERM)
	}
	if !strings.Contains(errOut, "CAP_NET_ADMIN") {
		t.Errorf("error %q does not name the missing capability", errOut)
	}
	if !installed() {
		t.Fatal("rules are gone although the child had no CAP_NET_ADMIN")
	}

	// Control: the same child with full root privileges succeeds.
	if _, errOut, code := child(t, sb, bin, "uninstall", sandbox.ExecOptions{}); code != 0 {
		t.Fatalf("uninstall as full root: exit %d, stderr %q", code, errOut)
	}
	if installed() {
		t.Fatal("rules still installed after a privileged uninstall")
	}
}
