// Package spool is the sidecar's on-disk, append-only log of messages
// waiting for a JetStream acknowledgement.
//
// A spool is a directory of segment files. Each record is framed with its
// length and a CRC32C, so a tail torn by a crash is found on Open, cut off
// and logged. Positions (Pos) are global byte offsets that stay valid across
// restarts. Records are acknowledged individually and in any order; a
// segment is deleted once every record in it is acknowledged, and a small
// checkpoint file remembers the acknowledged watermark so that a restart
// resends only what may not have arrived.
package spool
