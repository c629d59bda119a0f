// Package origdst recovers the destination a redirected TCP connection was
// originally sent to, from the conntrack entry the nat REDIRECT rule created
// (SO_ORIGINAL_DST for IPv4, IP6T_SO_ORIGINAL_DST for IPv6).
package origdst
