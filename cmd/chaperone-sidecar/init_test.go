package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/chaperone-dev/chaperone/pkg/sandbox"
	"github.com/chaperone-dev/chaperone/sidecar/redirect"
)

// initArgsEnv makes the test binary run `init` with these space-separated
// arguments instead of the tests; the tests use it to run init inside a
// sandbox without CAP_NET_ADMIN.
const initArgsEnv = "CHAPERONE_TEST_INIT_ARGS"

func TestMain(m *testing.M) {
	sandbox.MaybeRunHelper()
	if args, ok := os.LookupEnv(initArgsEnv); ok {
		if err := runInit(context.Background(), strings.Fields(args), os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "chaperone-sidecar:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestParseInitFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    func(*initConfig)
		wantErr string
	}{
		{name: "defaults", args: nil, want: func(*initConfig) {}},
		{
			name: "everything",
			args: []string{"--proxy-port", "15006", "--proxy-uid", "1337", "--proxy-gid", "1338",
				"--exclude-cidrs", "10.96.0.0/12, 169.254.169.254,fd00::/8", "--exclude-ports", "22,5432",
				"--exclude-uids", "999", "--admin-port", "0", "--ipv6=false", "--dry-run"},
			want: func(c *initConfig) {
				c.Redirect.ProxyPort, c.Redirect.ProxyUID, c.Redirect.ProxyGID = 15006, 1337, 1338
				c.Redirect.ExcludeCIDRs = []netip.Prefix{
					netip.MustParsePrefix("10.96.0.0/12"), netip.MustParsePrefix("169.254.169.254/32"), netip.MustParsePrefix("fd00::/8"),
				}
				c.Redirect.ExcludePorts = []uint16{22, 5432}
				c.Redirect.ExcludeUIDs = []uint32{999}
				c.Redirect.AdminPort = 0
				c.Redirect.IPv6 = false
				c.DryRun = true
			},
		},
		{name: "uninstall ignores rule flags", args: []string{"--uninstall"}, want: func(c *initConfig) { c.Uninstall = true }},
		{name: "bad port", args: []string{"--proxy-port", "70000"}, wantErr: "invalid port"},
		{name: "bad cidr", args: []string{"--exclude-cidrs", "10.0.0.0/33"}, wantErr: "invalid cidr"},
		{name: "root uid", args: []string{"--proxy-uid", "0"}, wantErr: "proxy uid must not be 0"},
		{name: "stray argument", args: []string{"extra"}, wantErr: "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseInitFlags(tt.args, new(bytes.Buffer))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseInitFlags(%q) error = %v, want %q", tt.args, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := initConfig{Redirect: redirect.DefaultConfig()}
			tt.want(&want)
			if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
				t.Fatalf("parseInitFlags(%q) =\n%+v\nwant\n%+v", tt.args, got, want)
			}
		})
	}
}

func TestRunInitDryRun(t *testing.T) {
	var out bytes.Buffer
	if err := runInit(t.Context(), []string{"--dry-run", "--exclude-ports", "22"}, &out); err != nil {
		t.Fatal(err)
	}
	cfg := redirect.DefaultConfig()
	cfg.ExcludePorts = []uint16{22}
	want := "# dry run: not installed\n" + redirect.Plan(cfg).String()
	if out.String() != want {
		t.Fatalf("dry run printed\n%s\nwant\n%s", out.String(), want)
	}
}

// TestRunInitInNamespace installs and removes the rules through the
// subcommand in a fresh network namespace, and checks the error a process
// without CAP_NET_ADMIN gets.
func TestRunInitInNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test creates a network namespace and programs nftables; run it as root (make test does)")
	}
	sb, err := sandbox.New(t.Context(), sandbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sb.Close() })

	var out bytes.Buffer
	var installed bool
	err = sb.InNamespace(func() error {
		if err := runInit(t.Context(), []string{"--exclude-ports", "22"}, &out); err != nil {
			return err
		}
		var err error
		installed, err = redirect.Installed(t.Context())
		return err
	})
	if err != nil || !installed {
		t.Fatalf("init: installed=%v err=%v", installed, err)
	}
	if !strings.HasPrefix(out.String(), "# installed\ntable inet chaperone {") || !strings.Contains(out.String(), "tcp dport 22 return") {
		t.Fatalf("init printed %q", out.String())
	}

	// Without CAP_NET_ADMIN: a clear error and a non-zero exit.
	var stderr bytes.Buffer
	cmd, err := sb.Command(t.Context(), sandbox.ExecOptions{
		Path:         os.Args[0],
		Env:          append(os.Environ(), initArgsEnv+"=--uninstall", noRaceExitDelay),
		Stderr:       &stderr,
		DropNetAdmin: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.Start(cmd); err != nil {
		t.Fatal(err)
	}
	var exitErr *exec.ExitError
	if err := cmd.Wait(); !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 {
		t.Fatalf("init --uninstall without CAP_NET_ADMIN: %v, stderr %q; want exit 1", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "CAP_NET_ADMIN is required") {
		t.Errorf("stderr %q does not explain the missing capability", stderr.String())
	}

	out.Reset()
	err = sb.InNamespace(func() error {
		if err := runInit(t.Context(), []string{"--uninstall"}, &out); err != nil {
			return err
		}
		var err error
		installed, err = redirect.Installed(t.Context())
		return err
	})
	if err != nil || installed {
		t.Fatalf("init --uninstall: installed=%v err=%v", installed, err)
	}
	if got := strings.Split(strings.TrimSpace(out.String()), "\n"); !slices.Equal(got, []string{"# removed table inet chaperone"}) {
		t.Fatalf("uninstall printed %q", out.String())
	}
}

// noRaceExitDelay stops -race child processes from sleeping a second at exit.
const noRaceExitDelay = "GORACE=atexit_sleep_ms=0"
