package redirect

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

func TestPlanGolden(t *testing.T) {
	withDefaults := func(mod func(*Config)) Config {
		c := DefaultConfig()
		mod(&c)
		return c
	}
	tests := []struct {
		name string
		cfg  Config
	}{
		{"defaults", DefaultConfig()},
		{"exclude-cidrs", withDefaults(func(c *Config) {
			c.ExcludeCIDRs = []netip.Prefix{
				netip.MustParsePrefix("10.96.0.0/12"),
				netip.MustParsePrefix("169.254.169.254/32"),
				netip.MustParsePrefix("10.96.0.1/12"), // same network once masked
				netip.MustParsePrefix("fd00:10:96::/112"),
				netip.MustParsePrefix("2001:db8::1/128"),
			}
		})},
		{"exclude-ports", withDefaults(func(c *Config) {
			c.ExcludePorts = []uint16{22, 5432, 22}
			c.AdminPort = 0
		})},
		{"custom-uid", withDefaults(func(c *Config) {
			c.ProxyUID, c.ProxyGID = 1337, 1338
			c.ProxyPort = 15006
			c.ExcludeUIDs = []uint32{999}
		})},
		{"ipv4-only", withDefaults(func(c *Config) {
			c.IPv6 = false
			c.ExcludeCIDRs = []netip.Prefix{
				netip.MustParsePrefix("192.0.2.0/24"),
				netip.MustParsePrefix("2001:db8::/32"), // dropped: IPv6 is off
			}
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			got := Plan(tt.cfg).String()
			path := filepath.Join("testdata", tt.name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("Plan(%s) mismatch (go test -update to accept)\n--- got\n%s--- want\n%s", tt.name, got, want)
			}
		})
	}
}

func TestPlanEndsWithRedirect(t *testing.T) {
	rs := Plan(DefaultConfig())
	last := rs.Rules[len(rs.Rules)-1]
	if last.Verdict != Redirect || last.RedirectPort != DefaultProxyPort || !last.TCP {
		t.Fatalf("last rule = %v, want tcp redirect to %d", last, DefaultProxyPort)
	}
	for _, r := range rs.Rules[:len(rs.Rules)-1] {
		if r.Verdict != Return {
			t.Errorf("rule %v before the redirect is not a return", r)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr string
	}{
		{"defaults", func(*Config) {}, ""},
		{"zero port", func(c *Config) { c.ProxyPort = 0 }, "proxy port"},
		{"root uid", func(c *Config) { c.ProxyUID = 0 }, "proxy uid"},
		{"root gid", func(c *Config) { c.ProxyGID = 0 }, "proxy gid"},
		{"admin is proxy", func(c *Config) { c.AdminPort = c.ProxyPort }, "admin port"},
		{"exclude proxy port", func(c *Config) { c.ExcludePorts = []uint16{15001} }, "is the proxy port"},
		{"exclude port 0", func(c *Config) { c.ExcludePorts = []uint16{0} }, "exclude port"},
		{"default route", func(c *Config) { c.ExcludeCIDRs = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")} }, "disable redirection"},
		{"invalid prefix", func(c *Config) { c.ExcludeCIDRs = []netip.Prefix{{}} }, "not a valid prefix"},
		{"mapped prefix", func(c *Config) { c.ExcludeCIDRs = []netip.Prefix{netip.MustParsePrefix("::ffff:10.0.0.0/104")} }, "plain IPv4"},
		{"exclude root", func(c *Config) { c.ExcludeUIDs = []uint32{0} }, "exclude uid"},
		{"zero value", func(c *Config) { *c = Config{} }, "proxy port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mod(&c)
			err := c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Validate() = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}
