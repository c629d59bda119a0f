// Package event is Chaperone's one versioned event model.
//
// The sidecar, the node agent, the server and the CLI all speak in Events:
// JSON on the wire (one event per NATS message), one row per event in the
// store, one line per event in exports. Every event names its session, its
// per-session producer sequence, its kind and exactly one kind-specific
// payload. The server links the events of a session into a hash chain when
// it stores them (see Chain).
//
// Version 1 is the only schema version so far; Decode refuses any other.
package event
