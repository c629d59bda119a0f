package redirect

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"

	"github.com/chaperone-dev/chaperone/pkg/sandbox"
)

// testModeEnv switches the test binary into a child-process mode that the
// kernel tests run inside a sandbox.
const testModeEnv = "CHAPERONE_REDIRECT_TEST_MODE"

// Exit codes of the child modes.
const (
	exitRefused = 3
	exitEPERM   = 4
	exitOther   = 5
)

func TestMain(m *testing.M) {
	sandbox.MaybeRunHelper()
	if mode := os.Getenv(testModeEnv); mode != "" {
		os.Exit(runChildMode(mode))
	}
	os.Exit(m.Run())
}

func runChildMode(mode string) int {
	switch {
	case strings.HasPrefix(mode, "dial "):
		conn, err := net.Dial("tcp", strings.TrimPrefix(mode, "dial "))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			if errors.Is(err, syscall.ECONNREFUSED) {
				return exitRefused
			}
			return exitOther
		}
		defer conn.Close()
		if _, err := io.Copy(os.Stdout, conn); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return exitOther
		}
		return 0
	case mode == "uninstall":
		err := Uninstall(context.Background())
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			if errors.Is(err, os.ErrPermission) {
				return exitEPERM
			}
			return exitOther
		}
		return 0
	default:
		fmt.Fprintf(os.Stderr, "unknown %s %q\n", testModeEnv, mode)
		return exitOther
	}
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test programs nftables in a fresh network namespace and needs root; run it as root (make test does)")
	}
}

func newSandbox(t *testing.T) *sandbox.Sandbox {
	t.Helper()
	requireRoot(t)
	sb, err := sandbox.New(t.Context(), sandbox.Options{})
	if err != nil {
		t.Fatalf("sandbox.New: %v", err)
	}
	t.Cleanup(func() {
		if err := sb.Close(); err != nil {
			t.Errorf("sandbox Close: %v", err)
		}
	})
	return sb
}

// readBack lists what the kernel holds for our table.
type readBack struct {
	tables int
	chains []*nftables.Chain
	rules  []*nftables.Rule
}

func readRules(t *testing.T) readBack {
	t.Helper()
	conn, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	var rb readBack
	tables, err := conn.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatalf("list tables: %v", err)
	}
	var table *nftables.Table
	for _, tb := range tables {
		if tb.Name == TableName {
			rb.tables++
			table = tb
		}
	}
	if table == nil {
		return rb
	}
	chains, err := conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatalf("list chains: %v", err)
	}
	for _, c := range chains {
		if c.Table.Name == TableName {
			rb.chains = append(rb.chains, c)
			rules, err := conn.GetRules(table, c)
			if err != nil {
				t.Fatalf("get rules: %v", err)
			}
			rb.rules = append(rb.rules, rules...)
		}
	}
	return rb
}

func TestInstallReadBack(t *testing.T) {
	sb := newSandbox(t)
	cfg := DefaultConfig()
	cfg.ExcludeCIDRs = []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12"), netip.MustParsePrefix("fd00:10:96::/108")}
	cfg.ExcludePorts = []uint16{22, 5432}
	cfg.ExcludeUIDs = []uint32{1000}

	err := sb.InNamespace(func() error {
		ctx := t.Context()
		if ok, err := Installed(ctx); err != nil || ok {
			return fmt.Errorf("Installed before Install = %v, %w; want false", ok, err)
		}
		if err := Uninstall(ctx); err != nil {
			return fmt.Errorf("Uninstall with nothing installed: %w", err)
		}
		want := Plan(cfg)
		for i := range 2 {
			got, err := Install(ctx, cfg)
			if err != nil {
				return fmt.Errorf("Install #%d: %w", i+1, err)
			}
			if got.String() != want.String() {
				return fmt.Errorf("Install returned\n%s\nwant\n%s", got, want)
			}
			checkKernelRules(t, want)
		}
		if ok, err := Installed(ctx); err != nil || !ok {
			return fmt.Errorf("Installed after Install = %v, %w; want true", ok, err)
		}
		if err := Uninstall(ctx); err != nil {
			return fmt.Errorf("Uninstall: %w", err)
		}
		if rb := readRules(t); rb.tables != 0 {
			return fmt.Errorf("%d tables left after Uninstall", rb.tables)
		}
		if ok, err := Installed(ctx); err != nil || ok {
			return fmt.Errorf("Installed after Uninstall = %v, %w; want false", ok, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// checkKernelRules compares the kernel's copy of the table with the plan,
// expression by expression.
func checkKernelRules(t *testing.T, want RuleSet) {
	t.Helper()
	rb := readRules(t)
	if rb.tables != 1 || len(rb.chains) != 1 {
		t.Fatalf("kernel has %d tables and %d chains, want 1 and 1", rb.tables, len(rb.chains))
	}
	c := rb.chains[0]
	if c.Name != want.Chain || c.Type != nftables.ChainTypeNAT ||
		c.Hooknum == nil || *c.Hooknum != *nftables.ChainHookOutput ||
		c.Priority == nil || int32(*c.Priority) != want.Priority {
		t.Fatalf("chain = %+v, want nat output %s priority %d", c, want.Chain, want.Priority)
	}
	if len(rb.rules) != len(want.Rules) {
		t.Fatalf("kernel has %d rules, want %d", len(rb.rules), len(want.Rules))
	}
	for i, r := range rb.rules {
		comment, _ := userdata.GetString(r.UserData, userdata.TypeComment)
		if comment != want.Rules[i].Comment {
			t.Errorf("rule %d comment %q, want %q", i, comment, want.Rules[i].Comment)
		}
		if wantExprs := ruleExprs(want.Rules[i]); !reflect.DeepEqual(r.Exprs, wantExprs) {
			t.Errorf("rule %d (%s) expressions differ:\nkernel %s\nwant   %s", i, want.Rules[i], dumpExprs(r.Exprs), dumpExprs(wantExprs))
		}
	}
}

// testBinary copies the test binary to a directory every user can read, so
// children running as the proxy UID can execute it.
func testBinary(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "redirect-test-bin")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "redirect.test")
	if err := os.WriteFile(path, src, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// child runs the test binary inside sb in mode; it returns stdout, stderr
// and the exit code.
func child(t *testing.T, sb *sandbox.Sandbox, bin, mode string, opts sandbox.ExecOptions) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	opts.Path = bin
	opts.Env = append(os.Environ(), testModeEnv+"="+mode, noRaceExitDelay)
	opts.Stdout, opts.Stderr = &stdout, &stderr
	cmd, err := sb.Command(t.Context(), opts)
	if err != nil {
		t.Fatalf("Command: %v", err)
	}
	if err := sb.Start(cmd); err != nil {
		t.Fatalf("Start: %v", err)
	}
	code := 0
	if err := cmd.Wait(); err != nil {
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) {
			t.Fatalf("child %q: %v", mode, err)
		}
		code = exitErr.ExitCode()
	}
	return stdout.String(), stderr.String(), code
}

// serve answers every connection on ln with reply(conn) and closes it.
func serve(ln net.Listener, reply func(*net.TCPConn) string) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := c.(*net.TCPConn)
			_, _ = io.WriteString(tc, reply(tc))
			_ = tc.Close()
		}
	}()
}

func listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func fixed(s string) func(*net.TCPConn) string { return func(*net.TCPConn) string { return s } }

func dumpExprs(es []expr.Any) string {
	var parts []string
	for _, e := range es {
		parts = append(parts, fmt.Sprintf("%T%+v", e, e))
	}
	return strings.Join(parts, " ")
}

// noRaceExitDelay stops -race child processes from sleeping a second at exit.
const noRaceExitDelay = "GORACE=atexit_sleep_ms=0"
