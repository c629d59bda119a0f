package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// nsLinkName is the sandbox side of the veth pair, named as in a pod.
const nsLinkName = "eth0"

// Sandbox is a network namespace with a veth link to the host namespace.
type Sandbox struct {
	log      *slog.Logger
	name     string
	ns       netns.NsHandle
	hostLink string

	hostIP, nsIP   netip.Addr
	hostIP6, nsIP6 netip.Addr

	closeOnce sync.Once
	closeErr  error
}

// New creates the namespace, the veth pair and the addresses and routes. It
// needs CAP_SYS_ADMIN and CAP_NET_ADMIN (in practice: root).
func New(ctx context.Context, opts Options) (sb *Sandbox, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	id, err := randomHex(4)
	if err != nil {
		return nil, err
	}
	sb = &Sandbox{
		log:      discardLogger(opts.Logger),
		name:     opts.Name,
		ns:       netns.None(),
		hostLink: "chp" + id,
	}
	defer func() {
		if err != nil {
			_ = sb.Close()
			sb = nil
		}
	}()

	if sb.ns, err = newNetNS(opts.Name); err != nil {
		return nil, err
	}
	if err := sb.wire(); err != nil {
		return nil, err
	}
	sb.log.Info("sandbox ready", logKeyName, sb.displayName(), logKeyLink, sb.hostLink,
		logKeyHostIP, sb.hostIP, logKeyNSIP, sb.nsIP, logKeyHostIP6, sb.hostIP6, logKeyNSIP6, sb.nsIP6)
	return sb, nil
}

// newNetNS creates a namespace on a throwaway locked thread and returns a
// handle to it without leaving any thread of ours inside.
func newNetNS(name string) (netns.NsHandle, error) {
	type result struct {
		ns  netns.NsHandle
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			ch <- result{netns.None(), fmt.Errorf("sandbox: current netns: %w", err)}
			return // thread stays locked and is discarded
		}
		defer orig.Close()
		var ns netns.NsHandle
		if name != "" {
			ns, err = netns.NewNamed(name)
		} else {
			ns, err = netns.New()
		}
		if restoreErr := netns.Set(orig); restoreErr != nil {
			if err == nil {
				ns.Close()
			}
			ch <- result{netns.None(), fmt.Errorf("sandbox: restore netns: %w", restoreErr)}
			return
		}
		runtime.UnlockOSThread()
		if err != nil {
			ch <- result{netns.None(), fmt.Errorf("sandbox: create netns: %w", err)}
			return
		}
		ch <- result{ns, nil}
	}()
	r := <-ch
	return r.ns, r.err
}

// wire creates the veth pair and configures both ends.
func (sb *Sandbox) wire() error {
	host, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("sandbox: netlink: %w", err)
	}
	defer host.Close()
	inside, err := netlink.NewHandleAt(sb.ns)
	if err != nil {
		return fmt.Errorf("sandbox: netlink in netns: %w", err)
	}
	defer inside.Close()

	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: sb.hostLink},
		PeerName:      nsLinkName,
		PeerNamespace: netlink.NsFd(int(sb.ns)),
	}
	if err := host.LinkAdd(veth); err != nil {
		return fmt.Errorf("sandbox: add veth %s: %w", sb.hostLink, err)
	}
	hostLink, err := host.LinkByName(sb.hostLink)
	if err != nil {
		return fmt.Errorf("sandbox: find %s: %w", sb.hostLink, err)
	}
	nsLink, err := inside.LinkByName(nsLinkName)
	if err != nil {
		return fmt.Errorf("sandbox: find %s in netns: %w", nsLinkName, err)
	}
	lo, err := inside.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("sandbox: find lo in netns: %w", err)
	}

	if err := sb.assignIPv4(host, inside, hostLink, nsLink); err != nil {
		return err
	}
	if err := sb.assignIPv6(host, inside, hostLink, nsLink); err != nil {
		return err
	}
	for _, up := range []struct {
		h    *netlink.Handle
		link netlink.Link
	}{{host, hostLink}, {inside, lo}, {inside, nsLink}} {
		if err := up.h.LinkSetUp(up.link); err != nil {
			return fmt.Errorf("sandbox: set %s up: %w", up.link.Attrs().Name, err)
		}
	}
	for _, gw := range []netip.Addr{sb.hostIP, sb.hostIP6} {
		route := &netlink.Route{LinkIndex: nsLink.Attrs().Index, Gw: net.IP(gw.AsSlice())}
		if err := inside.RouteAdd(route); err != nil {
			return fmt.Errorf("sandbox: default route via %v: %w", gw, err)
		}
	}
	return nil
}

// assignIPv4 picks a free link-local /30 and puts .1 on the host side and
// .2 inside. A file lock keeps concurrent sandboxes in other processes from
// choosing the same block between the check and the assignment.
func (sb *Sandbox) assignIPv4(host, inside *netlink.Handle, hostLink, nsLink netlink.Link) error {
	unlock, err := lockAddressPool()
	if err != nil {
		return err
	}
	defer unlock()
	existing, err := host.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("sandbox: list host addresses: %w", err)
	}
	var used []netip.Prefix
	for _, a := range existing {
		if p, ok := prefixOf(a.IPNet); ok {
			used = append(used, p)
		}
	}
	block, err := pickBlock(used)
	if err != nil {
		return err
	}
	sb.hostIP = block.Addr().Next()
	sb.nsIP = sb.hostIP.Next()
	if err := host.AddrAdd(hostLink, addr(sb.hostIP, block.Bits(), 0)); err != nil {
		return fmt.Errorf("sandbox: address %v on %s: %w", sb.hostIP, sb.hostLink, err)
	}
	if err := inside.AddrAdd(nsLink, addr(sb.nsIP, block.Bits(), 0)); err != nil {
		return fmt.Errorf("sandbox: address %v on %s: %w", sb.nsIP, nsLinkName, err)
	}
	return nil
}

// assignIPv6 puts ::1 and ::2 of a random ULA /64 on the two ends, without
// duplicate address detection so they are usable at once.
func (sb *Sandbox) assignIPv6(host, inside *netlink.Handle, hostLink, nsLink netlink.Link) error {
	prefix, err := randomULA()
	if err != nil {
		return err
	}
	sb.hostIP6 = prefix.Addr().Next()
	sb.nsIP6 = sb.hostIP6.Next()
	if err := host.AddrAdd(hostLink, addr(sb.hostIP6, 64, unix.IFA_F_NODAD)); err != nil {
		return fmt.Errorf("sandbox: address %v on %s: %w", sb.hostIP6, sb.hostLink, err)
	}
	if err := inside.AddrAdd(nsLink, addr(sb.nsIP6, 64, unix.IFA_F_NODAD)); err != nil {
		return fmt.Errorf("sandbox: address %v on %s: %w", sb.nsIP6, nsLinkName, err)
	}
	return nil
}

func addr(a netip.Addr, bits, flags int) *netlink.Addr {
	return &netlink.Addr{
		IPNet: &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(bits, a.BitLen())},
		Flags: flags,
	}
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones).Masked(), true
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("sandbox: random: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// HostIP is the host side's IPv4 address, reachable from inside.
func (sb *Sandbox) HostIP() netip.Addr { return sb.hostIP }

// NSIP is the sandbox side's IPv4 address.
func (sb *Sandbox) NSIP() netip.Addr { return sb.nsIP }

// HostIP6 is the host side's IPv6 ULA address, reachable from inside.
func (sb *Sandbox) HostIP6() netip.Addr { return sb.hostIP6 }

// NSIP6 is the sandbox side's IPv6 ULA address.
func (sb *Sandbox) NSIP6() netip.Addr { return sb.nsIP6 }

// HostLink is the name of the host side of the veth pair.
func (sb *Sandbox) HostLink() string { return sb.hostLink }

// Path is a path to the namespace that other processes can open while the
// sandbox is alive: /run/netns/<Name> when named, else a /proc path that is
// only valid in this process.
func (sb *Sandbox) Path() string {
	if sb.name != "" {
		return "/run/netns/" + sb.name
	}
	return fmt.Sprintf("/proc/self/fd/%d", int(sb.ns))
}

func (sb *Sandbox) displayName() string {
	if sb.name != "" {
		return sb.name
	}
	return sb.hostLink
}

// InNamespace runs fn on an OS thread that is inside the sandbox's network
// namespace. Sockets and netlink connections fn opens belong to the
// sandbox; goroutines fn starts do not run inside it.
func (sb *Sandbox) InNamespace(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("sandbox: current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(sb.ns); err != nil {
			errc <- fmt.Errorf("sandbox: enter netns: %w", err)
			return
		}
		fnErr := fn()
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: the runtime ends it with this goroutine.
			errc <- errors.Join(fnErr, fmt.Errorf("sandbox: restore netns: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- fnErr
	}()
	return <-errc
}

// Close deletes the veth pair and releases the namespace (and its
// /run/netns entry). Processes still running inside keep the namespace
// alive until they exit, but lose their link. Close is safe to call twice.
func (sb *Sandbox) Close() error {
	sb.closeOnce.Do(func() {
		var errs []error
		if link, err := netlink.LinkByName(sb.hostLink); err == nil {
			if err := netlink.LinkDel(link); err != nil {
				errs = append(errs, fmt.Errorf("sandbox: delete %s: %w", sb.hostLink, err))
			}
		} else if !errors.As(err, new(netlink.LinkNotFoundError)) {
			errs = append(errs, fmt.Errorf("sandbox: find %s: %w", sb.hostLink, err))
		}
		if sb.ns.IsOpen() {
			if err := sb.ns.Close(); err != nil {
				errs = append(errs, fmt.Errorf("sandbox: close netns: %w", err))
			}
		}
		if sb.name != "" {
			if err := netns.DeleteNamed(sb.name); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
				errs = append(errs, fmt.Errorf("sandbox: delete /run/netns/%s: %w", sb.name, err))
			}
		}
		sb.closeErr = errors.Join(errs...)
		sb.log.Info("sandbox closed", logKeyName, sb.displayName(), "error", sb.closeErr)
	})
	return sb.closeErr
}
