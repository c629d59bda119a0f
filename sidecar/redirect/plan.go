package redirect

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Names of the nftables objects Install owns.
const (
	TableName = "chaperone"
	ChainName = "output"
	// ChainPriority is the standard dstnat priority ("priority dstnat").
	ChainPriority int32 = -100
)

// Verdict is what a rule does with a matching packet.
type Verdict int

// Verdicts used by the plan.
const (
	// Return leaves the chain: the connection goes where it was going.
	Return Verdict = iota
	// Redirect sends the connection to the proxy port on the local host.
	Redirect
)

// NFProto restricts a rule to one address family inside the inet table.
type NFProto int

// Address families a rule can be limited to.
const (
	AnyFamily NFProto = iota
	IPv4
	IPv6
)

// Rule is one line of the output chain. Every set match must hold for the
// rule to apply; an empty rule matches everything.
type Rule struct {
	// Family limits the rule to IPv4 or IPv6 packets ("meta nfproto").
	Family NFProto
	// OIFName matches the output interface name.
	OIFName string
	// Daddr matches the destination address; the family follows from it.
	Daddr netip.Prefix
	// SkUID and SkGID match the owner of the sending socket.
	SkUID *uint32
	SkGID *uint32
	// TCP matches TCP packets ("meta l4proto tcp").
	TCP bool
	// TCPDport matches the TCP destination port (implies TCP).
	TCPDport uint16
	// Verdict is the action; RedirectPort is used with Redirect.
	Verdict      Verdict
	RedirectPort uint16
	// Comment is stored with the rule in the kernel and shown by nft.
	Comment string
}

// RuleSet is the complete description of what Install programs: one table,
// one nat output chain, and its rules in order.
type RuleSet struct {
	Family   string // always "inet"
	Table    string
	Chain    string
	Priority int32
	Rules    []Rule
}

// Plan turns a configuration into the rule set Install programs. It does
// not validate cfg; Install does.
func Plan(cfg Config) RuleSet {
	rs := RuleSet{Family: "inet", Table: TableName, Chain: ChainName, Priority: ChainPriority}
	add := func(r Rule) { rs.Rules = append(rs.Rules, r) }

	add(Rule{OIFName: "lo", Comment: "loopback"})
	add(Rule{Daddr: netip.MustParsePrefix("127.0.0.0/8"), Comment: "loopback"})
	if cfg.IPv6 {
		add(Rule{Daddr: netip.MustParsePrefix("::1/128"), Comment: "loopback"})
	}
	add(Rule{SkUID: ptr(cfg.ProxyUID), Comment: "sidecar uid"})
	add(Rule{SkGID: ptr(cfg.ProxyGID), Comment: "sidecar gid"})
	for _, uid := range dedupe(cfg.ExcludeUIDs) {
		add(Rule{SkUID: ptr(uid), Comment: "excluded uid"})
	}
	if cfg.AdminPort != 0 {
		add(Rule{TCPDport: cfg.AdminPort, Comment: "sidecar admin port"})
	}
	for _, port := range dedupe(cfg.ExcludePorts) {
		add(Rule{TCPDport: port, Comment: "excluded port"})
	}
	for _, p := range excludedPrefixes(cfg) {
		add(Rule{Daddr: p, Comment: "excluded cidr"})
	}
	last := Rule{TCP: true, Verdict: Redirect, RedirectPort: cfg.ProxyPort, Comment: "to sidecar"}
	if !cfg.IPv6 {
		last.Family = IPv4
	}
	add(last)
	return rs
}

func excludedPrefixes(cfg Config) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range cfg.ExcludeCIDRs {
		p = p.Masked()
		if !p.IsValid() || (p.Addr().Is6() && !cfg.IPv6) || slices.Contains(out, p) {
			continue
		}
		out = append(out, p)
	}
	return out
}

func dedupe[T comparable](in []T) []T {
	var out []T
	for _, v := range in {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func ptr[T any](v T) *T { return &v }

// String renders the rule in nft syntax, e.g. `tcp dport 5432 return`.
func (r Rule) String() string {
	var parts []string
	switch r.Family {
	case IPv4:
		parts = append(parts, "meta nfproto ipv4")
	case IPv6:
		parts = append(parts, "meta nfproto ipv6")
	}
	if r.OIFName != "" {
		parts = append(parts, "oifname "+strconv.Quote(r.OIFName))
	}
	if r.Daddr.IsValid() {
		kw := "ip"
		if r.Daddr.Addr().Is6() {
			kw = "ip6"
		}
		parts = append(parts, kw+" daddr "+prefixString(r.Daddr))
	}
	if r.SkUID != nil {
		parts = append(parts, "meta skuid "+strconv.FormatUint(uint64(*r.SkUID), 10))
	}
	if r.SkGID != nil {
		parts = append(parts, "meta skgid "+strconv.FormatUint(uint64(*r.SkGID), 10))
	}
	switch {
	case r.TCPDport != 0:
		parts = append(parts, "tcp dport "+strconv.Itoa(int(r.TCPDport)))
	case r.TCP:
		parts = append(parts, "meta l4proto tcp")
	}
	switch r.Verdict {
	case Redirect:
		parts = append(parts, "redirect to :"+strconv.Itoa(int(r.RedirectPort)))
	default:
		parts = append(parts, "return")
	}
	if r.Comment != "" {
		parts = append(parts, "comment "+strconv.Quote(r.Comment))
	}
	return strings.Join(parts, " ")
}

// prefixString prints single addresses without a length, as nft does.
func prefixString(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// String renders the rule set as an nft script that `nft -f` would accept.
func (rs RuleSet) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table %s %s {\n", rs.Family, rs.Table)
	fmt.Fprintf(&b, "\tchain %s {\n", rs.Chain)
	fmt.Fprintf(&b, "\t\ttype nat hook output priority %d; policy accept;\n", rs.Priority)
	for _, r := range rs.Rules {
		fmt.Fprintf(&b, "\t\t%s\n", r)
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}
