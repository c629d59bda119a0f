package sandbox

import (
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// linkLocal is where sandbox /30 blocks come from. The first and last /24
// are reserved by RFC 3927 and 169.254.169.0/24 holds the cloud metadata
// address, so those are never used.
var linkLocal = netip.MustParsePrefix("169.254.0.0/16")

const blockBits = 30

var errPoolExhausted = errors.New("sandbox: no free 169.254.0.0/16 /30 block")

// pickBlock returns a random /30 in 169.254.1.0–169.254.254.255 that
// overlaps none of used.
func pickBlock(used []netip.Prefix) (netip.Prefix, error) {
	const perThird = 256 / 4
	const total = 254 * perThird // third octet 1..254
	start, err := rand.Int(rand.Reader, big.NewInt(total))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("sandbox: random: %w", err)
	}
	for i := range int64(total) {
		n := (start.Int64() + i) % total
		third := byte(1 + n/perThird)
		if third == 169 {
			continue
		}
		base := linkLocal.Addr().As4()
		base[2], base[3] = third, byte(n%perThird)*4
		block := netip.PrefixFrom(netip.AddrFrom4(base), blockBits)
		if !overlapsAny(block, used) {
			return block, nil
		}
	}
	return netip.Prefix{}, errPoolExhausted
}

func overlapsAny(p netip.Prefix, used []netip.Prefix) bool {
	for _, u := range used {
		if u.Overlaps(p) {
			return true
		}
	}
	return false
}

// randomULA returns a random fdXX:XXXX:XXXX:XXXX::/64 (RFC 4193).
func randomULA() (netip.Prefix, error) {
	var a [16]byte
	if _, err := rand.Read(a[1:8]); err != nil {
		return netip.Prefix{}, fmt.Errorf("sandbox: random: %w", err)
	}
	a[0] = 0xfd
	return netip.PrefixFrom(netip.AddrFrom16(a), 64), nil
}

// lockAddressPool takes an exclusive lock shared by all processes that
// create sandboxes on this machine and returns its release function.
func lockAddressPool() (func(), error) {
	dir := "/run/lock"
	if _, err := os.Stat(dir); err != nil {
		dir = os.TempDir()
	}
	f, err := os.OpenFile(filepath.Join(dir, "chaperone-sandbox.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sandbox: address pool lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("sandbox: address pool lock: %w", err)
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		_ = f.Close()
	}, nil
}
