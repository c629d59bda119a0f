// Package server wires chaperone-server together: the SQLite store, NATS
// (embedded JetStream unless an external URL is given), the ingest
// consumer, and the HTTP API, with an orderly start and shutdown.
//
// cmd/chaperone-server maps its flags onto Config and calls Run.
package server
