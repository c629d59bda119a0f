// Package publish is the sidecar's no-loss event publisher.
//
// Publish assigns an event its session and per-session sequence, appends
// it to an on-disk spool (package spool) and returns; a sender goroutine
// reads the spool in order and publishes to JetStream asynchronously,
// within a bounded in-flight window. Consecutive events the spool already
// holds when the sender reads go in one message (a batch, see
// natsbus.EventsHeader, with "<first event id>+<n>" as Nats-Msg-Id); a
// lone event goes as it is, with its id as Nats-Msg-Id, and a blob always
// alone, in spool order. A record leaves the spool only after JetStream
// acknowledged its message. When NATS is away, or a publish fails or times
// out, the sender rewinds to the oldest unacknowledged record and sends
// again after reconnecting; JetStream's de-duplication drops the copies
// that had arrived as they were, the server's store those grouped
// otherwise. Whatever is left at Close stays on disk and is sent first by
// the next Publisher on the same directory.
//
// Accepting tells the proxy whether recording can still be guaranteed (the
// spool is writable and below its limit); the proxy refuses new
// connections when it cannot (fail-closed) unless configured fail-open.
package publish
