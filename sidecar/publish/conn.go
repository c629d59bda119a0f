package publish

import "github.com/nats-io/nats.go"

// Conn is the publisher's NATS connection, for the sidecar's other NATS
// traffic (approval requests, the policy watch): one connection per
// sidecar. Its reconnect buffer is off, so requests fail at once while it
// is down; callers retry.
func (p *Publisher) Conn() *nats.Conn { return p.nc }
