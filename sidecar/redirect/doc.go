// Package redirect programs the nftables rules that send every outbound TCP
// connection of an agent pod (or a chaperonectl run sandbox) to the sidecar's
// listener, where the original destination is recovered with SO_ORIGINAL_DST.
//
// The rules live in one dedicated table, "inet chaperone", with a single nat
// OUTPUT chain. Loopback traffic, the sidecar's own traffic (its UID or GID),
// excluded destinations and excluded destination ports return early; every
// other TCP connection is redirected to the proxy port. The inet family is
// used for both IPv4 and IPv6, which needs Linux 5.2 or newer for nat chains.
//
// UDP (and therefore DNS and QUIC) and inbound traffic are left alone on
// purpose: DNS must keep working without the sidecar, and clients fall back
// from QUIC to TCP when UDP/443 is unanswered, which a later version may
// enforce with a reject rule. Until then UDP traffic is not recorded.
//
// Plan is a pure function from Config to a RuleSet that renders as nft
// syntax; Install programs that RuleSet through netlink (no nft or iptables
// binaries are needed) and replaces an existing table in one atomic batch.
package redirect
