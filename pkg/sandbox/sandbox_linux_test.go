package sandbox

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// testModeEnv switches the test binary into a child-process mode used by
// the tests below instead of running tests.
const testModeEnv = "CHAPERONE_SANDBOX_TEST_MODE"

func TestMain(m *testing.M) {
	MaybeRunHelper()
	switch mode := os.Getenv(testModeEnv); {
	case mode == "":
	case strings.HasPrefix(mode, "dial "):
		conn, err := net.Dial("tcp", strings.TrimPrefix(mode, "dial "))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		_, _ = io.Copy(os.Stdout, conn)
		os.Exit(0)
	default:
		fmt.Fprintf(os.Stderr, "unknown %s %q\n", testModeEnv, mode)
		os.Exit(2)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "pkg/sandbox tests need root (network namespaces, veth, capabilities); run them as root, e.g. via make test")
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func newSandbox(t *testing.T, opts Options) *Sandbox {
	t.Helper()
	sb, err := New(t.Context(), opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := sb.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return sb
}

// runChild runs the test binary inside sb in the given test mode and
// returns its stdout.
func runChild(t *testing.T, sb *Sandbox, mode string, opts ExecOptions) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	opts.Path = os.Args[0]
	opts.Env = append(os.Environ(), testModeEnv+"="+mode, noRaceExitDelay)
	opts.Stdout, opts.Stderr = &stdout, &stderr
	cmd, err := sb.Command(t.Context(), opts)
	if err != nil {
		t.Fatalf("Command: %v", err)
	}
	if err := sb.Start(cmd); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child %q: %v; stderr: %s", mode, err, stderr.String())
	}
	return stdout.String()
}

// runStatus runs a shell inside sb that reports its identity,
// capabilities and network namespace. A system binary is used because the
// test binary's directory is not readable for non-root users.
func runStatus(t *testing.T, sb *Sandbox, opts ExecOptions) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	opts.Path = "/bin/sh"
	opts.Args = []string{"-c", `cat /proc/$$/status; echo "NetNS: $(readlink /proc/$$/ns/net)"`}
	opts.Stdout, opts.Stderr = &stdout, &stderr
	cmd, err := sb.Command(t.Context(), opts)
	if err != nil {
		t.Fatalf("Command: %v", err)
	}
	if err := sb.Start(cmd); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("status shell: %v; stderr: %s", err, stderr.String())
	}
	return stdout.String()
}

func statusField(t *testing.T, status, key string) string {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(status))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && k == key {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %s in child status:\n%s", key, status)
	return ""
}

func hasCap(t *testing.T, hexMask string, c int) bool {
	t.Helper()
	m, err := strconv.ParseUint(hexMask, 16, 64)
	if err != nil {
		t.Fatalf("capability mask %q: %v", hexMask, err)
	}
	return m&(1<<c) != 0
}

func TestNewWiresBothEnds(t *testing.T) {
	sb := newSandbox(t, Options{})

	for _, a := range []netip.Addr{sb.HostIP(), sb.NSIP()} {
		if !netip.MustParsePrefix("169.254.0.0/16").Contains(a) {
			t.Errorf("address %v is not link-local", a)
		}
	}
	if !sb.HostIP6().Is6() || sb.HostIP6().As16()[0] != 0xfd {
		t.Errorf("HostIP6 %v is not a ULA", sb.HostIP6())
	}
	if sb.NSIP() != sb.HostIP().Next() {
		t.Errorf("NSIP %v does not follow HostIP %v", sb.NSIP(), sb.HostIP())
	}

	hostLink, err := netlink.LinkByName(sb.HostLink())
	if err != nil {
		t.Fatalf("host link: %v", err)
	}
	if hostLink.Attrs().OperState == netlink.OperDown {
		t.Errorf("host link is down")
	}

	err = sb.InNamespace(func() error {
		links, err := netlink.LinkList()
		if err != nil {
			return err
		}
		var names []string
		for _, l := range links {
			names = append(names, l.Attrs().Name)
			if l.Attrs().Flags&net.FlagUp == 0 {
				return fmt.Errorf("link %s is not up", l.Attrs().Name)
			}
		}
		if strings.Join(names, ",") != "lo,eth0" {
			return fmt.Errorf("links inside = %v, want lo and eth0 only", names)
		}
		routes, err := netlink.RouteGet(net.ParseIP("192.0.2.1"))
		if err != nil || len(routes) == 0 || !routes[0].Gw.Equal(net.IP(sb.HostIP().AsSlice())) {
			return fmt.Errorf("route to 192.0.2.1 = %v, %w; want via %v", routes, err, sb.HostIP())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestCloseRemovesEverything(t *testing.T) {
	sb, err := New(t.Context(), Options{Name: "chaperone-test-" + strconv.Itoa(os.Getpid())})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if _, err := os.Stat(sb.Path()); err != nil {
		t.Fatalf("named netns: %v", err)
	}
	if err := sb.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := sb.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := netlink.LinkByName(sb.HostLink()); err == nil {
		t.Errorf("host link %s still exists", sb.HostLink())
	}
	if _, err := os.Stat(sb.Path()); !os.IsNotExist(err) {
		t.Errorf("%s still exists: %v", sb.Path(), err)
	}
}

func TestTwoSandboxesGetDistinctBlocks(t *testing.T) {
	a := newSandbox(t, Options{})
	b := newSandbox(t, Options{})
	pa := netip.PrefixFrom(a.HostIP(), blockBits).Masked()
	if pa.Contains(b.HostIP()) {
		t.Fatalf("sandboxes share %v", pa)
	}
}

func TestConnectFromInside(t *testing.T) {
	sb := newSandbox(t, Options{})
	for _, host := range []netip.Addr{sb.HostIP(), sb.HostIP6()} {
		t.Run(host.String(), func(t *testing.T) {
			ln, err := net.Listen("tcp", netip.AddrPortFrom(host, 0).String())
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			peers := make(chan netip.Addr, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				peers <- c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr()
				_, _ = io.WriteString(c, "hello")
			}()
			out := runChild(t, sb, "dial "+ln.Addr().String(), ExecOptions{})
			if out != "hello" {
				t.Fatalf("child read %q, want hello", out)
			}
			want := sb.NSIP()
			if host.Is6() {
				want = sb.NSIP6()
			}
			if got := <-peers; got != want {
				t.Fatalf("peer address %v, want the sandbox's %v", got, want)
			}
		})
	}
}

func TestCommandRunsInsideWithCredentials(t *testing.T) {
	sb := newSandbox(t, Options{})
	var nsPath string
	if err := sb.InNamespace(func() error {
		var err error
		nsPath, err = os.Readlink(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	hostNS, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if nsPath == hostNS {
		t.Fatalf("InNamespace ran in the host namespace %s", hostNS)
	}

	uid, gid := uint32(15137), uint32(15138)
	tests := []struct {
		name              string
		opts              ExecOptions
		wantUID, wantGID  string
		wantNetAdmin      bool
		wantBoundNetAdmin bool
	}{
		{"root", ExecOptions{}, "0", "0", true, true},
		{"root without net admin", ExecOptions{DropNetAdmin: true}, "0", "0", false, false},
		{"proxy user", ExecOptions{UID: &uid, GID: &gid}, "15137", "15138", false, true},
		{"uid only", ExecOptions{UID: &uid, DropNetAdmin: true}, "15137", "15137", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status := runStatus(t, sb, tt.opts)
			if got := statusField(t, status, "NetNS"); got != nsPath {
				t.Errorf("child netns %s, want the sandbox's %s", got, nsPath)
			}
			if got := strings.Fields(statusField(t, status, "Uid"))[0]; got != tt.wantUID {
				t.Errorf("uid %s, want %s", got, tt.wantUID)
			}
			if got := strings.Fields(statusField(t, status, "Gid"))[0]; got != tt.wantGID {
				t.Errorf("gid %s, want %s", got, tt.wantGID)
			}
			for _, c := range []int{unix.CAP_NET_ADMIN, unix.CAP_NET_RAW} {
				if got := hasCap(t, statusField(t, status, "CapEff"), c); got != tt.wantNetAdmin {
					t.Errorf("effective cap %d = %v, want %v", c, got, tt.wantNetAdmin)
				}
				if got := hasCap(t, statusField(t, status, "CapBnd"), c); got != tt.wantBoundNetAdmin {
					t.Errorf("bounding cap %d = %v, want %v", c, got, tt.wantBoundNetAdmin)
				}
			}
			if tt.opts.DropNetAdmin && tt.opts.UID == nil {
				// Other root capabilities stay.
				if !hasCap(t, statusField(t, status, "CapEff"), unix.CAP_SYS_ADMIN) {
					t.Errorf("CAP_SYS_ADMIN was dropped too")
				}
			}
		})
	}
}

func TestPickBlockAvoidsUsed(t *testing.T) {
	// Everything used except one block: that one must be found.
	free := netip.MustParsePrefix("169.254.77.8/30")
	used := []netip.Prefix{
		netip.MustParsePrefix("169.254.0.0/18"),
		netip.MustParsePrefix("169.254.64.0/21"),
		netip.MustParsePrefix("169.254.72.0/22"),
		netip.MustParsePrefix("169.254.76.0/24"),
		netip.MustParsePrefix("169.254.77.0/29"),
		netip.MustParsePrefix("169.254.77.12/30"),
		netip.MustParsePrefix("169.254.77.16/28"),
		netip.MustParsePrefix("169.254.77.32/27"),
		netip.MustParsePrefix("169.254.77.64/26"),
		netip.MustParsePrefix("169.254.77.128/25"),
		netip.MustParsePrefix("169.254.78.0/23"),
		netip.MustParsePrefix("169.254.80.0/20"),
		netip.MustParsePrefix("169.254.96.0/19"),
		netip.MustParsePrefix("169.254.128.0/17"),
	}
	got, err := pickBlock(used)
	if err != nil || got != free {
		t.Fatalf("pickBlock = %v, %v; want %v", got, err, free)
	}
	if _, err := pickBlock([]netip.Prefix{netip.MustParsePrefix("169.254.0.0/16")}); err == nil {
		t.Fatal("pickBlock found a block in a full pool")
	}
	for range 1000 {
		b, err := pickBlock(nil)
		if err != nil {
			t.Fatal(err)
		}
		if third := b.Addr().As4()[2]; third == 0 || third == 169 || third == 255 {
			t.Fatalf("pickBlock chose reserved %v", b)
		}
	}
}

// noRaceExitDelay stops -race child processes from sleeping a second at exit.
const noRaceExitDelay = "GORACE=atexit_sleep_ms=0"
