package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"

	"github.com/chaperone-dev/chaperone/sidecar/redirect"
)

// initConfig is the validated configuration of `chaperone-sidecar init`.
type initConfig struct {
	Redirect  redirect.Config
	Uninstall bool
	DryRun    bool
}

// Validate checks the redirect configuration unless only uninstalling.
func (c initConfig) Validate() error {
	if c.Uninstall {
		return nil
	}
	return c.Redirect.Validate()
}

// parseInitFlags turns the init subcommand's arguments into a config.
func parseInitFlags(args []string, out io.Writer) (initConfig, error) {
	cfg := initConfig{Redirect: redirect.DefaultConfig()}
	r := &cfg.Redirect
	fs := flag.NewFlagSet("chaperone-sidecar init", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintln(out, "usage: chaperone-sidecar init [flags]")
		fmt.Fprintln(out, "Installs the nftables rules that redirect the pod's outbound TCP to the sidecar (needs CAP_NET_ADMIN).")
		fs.PrintDefaults()
	}
	fs.Func("proxy-port", fmt.Sprintf("sidecar listener that receives redirected connections (default %d)", r.ProxyPort),
		func(s string) (err error) { r.ProxyPort, err = parsePort(s); return err })
	fs.Func("admin-port", fmt.Sprintf("sidecar admin port, never redirected; 0 for none (default %d)", r.AdminPort),
		func(s string) (err error) {
			if s == "0" {
				r.AdminPort = 0
				return nil
			}
			r.AdminPort, err = parsePort(s)
			return err
		})
	fs.Func("proxy-uid", fmt.Sprintf("UID of the sidecar, whose traffic is not redirected (default %d)", r.ProxyUID),
		func(s string) (err error) { r.ProxyUID, err = parseID(s); return err })
	fs.Func("proxy-gid", fmt.Sprintf("GID of the sidecar, whose traffic is not redirected (default %d)", r.ProxyGID),
		func(s string) (err error) { r.ProxyGID, err = parseID(s); return err })
	fs.Func("exclude-cidrs", "comma-separated destination CIDRs or addresses reached directly",
		func(s string) error {
			for _, f := range splitList(s) {
				p, err := parsePrefix(f)
				if err != nil {
					return err
				}
				r.ExcludeCIDRs = append(r.ExcludeCIDRs, p)
			}
			return nil
		})
	fs.Func("exclude-ports", "comma-separated TCP destination ports reached directly",
		func(s string) error {
			for _, f := range splitList(s) {
				p, err := parsePort(f)
				if err != nil {
					return err
				}
				r.ExcludePorts = append(r.ExcludePorts, p)
			}
			return nil
		})
	fs.Func("exclude-uids", "comma-separated further UIDs whose traffic is not redirected",
		func(s string) error {
			for _, f := range splitList(s) {
				id, err := parseID(f)
				if err != nil {
					return err
				}
				r.ExcludeUIDs = append(r.ExcludeUIDs, id)
			}
			return nil
		})
	fs.BoolVar(&r.IPv6, "ipv6", r.IPv6, "redirect IPv6 TCP too")
	fs.BoolVar(&cfg.Uninstall, "uninstall", false, "remove the rules instead of installing them")
	fs.BoolVar(&cfg.DryRun, "dry-run", false, "print the rules without installing them")
	if err := fs.Parse(args); err != nil {
		return initConfig{}, err
	}
	if fs.NArg() > 0 {
		return initConfig{}, fmt.Errorf("init: unexpected arguments %q", fs.Args())
	}
	if err := cfg.Validate(); err != nil {
		return initConfig{}, fmt.Errorf("init: %w", err)
	}
	return cfg, nil
}

// runInit is the `chaperone-sidecar init` subcommand: it installs (or with
// --uninstall removes) the redirect rules in the current network namespace
// and prints the rule set to stdout.
func runInit(ctx context.Context, args []string, stdout io.Writer) error {
	cfg, err := parseInitFlags(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	switch {
	case cfg.Uninstall && cfg.DryRun:
		fmt.Fprintf(stdout, "# dry run: would remove table inet %s\n", redirect.TableName)
		return nil
	case cfg.Uninstall:
		if err := redirect.Uninstall(ctx); err != nil {
			return fmt.Errorf("init: %w", err)
		}
		fmt.Fprintf(stdout, "# removed table inet %s\n", redirect.TableName)
		return nil
	case cfg.DryRun:
		fmt.Fprintln(stdout, "# dry run: not installed")
		fmt.Fprint(stdout, redirect.Plan(cfg.Redirect))
		return nil
	}
	rs, err := redirect.Install(ctx, cfg.Redirect)
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	fmt.Fprintln(stdout, "# installed")
	fmt.Fprint(stdout, rs)
	return nil
}

func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("invalid port %q", s)
	}
	return uint16(n), nil
}

func parseID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("invalid id %q", s)
	}
	return uint32(n), nil
}

// parsePrefix accepts a CIDR or a single address.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid cidr %q", s)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid cidr %q", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}
