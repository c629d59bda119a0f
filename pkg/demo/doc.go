// Package demo is `chaperonectl demo` (and `make demo`): the product's main
// job on one machine, end to end, with real components only.
//
// It starts chaperone-server (embedded NATS JetStream and SQLite) on a
// temporary data directory, a small target service on the host side of a
// fresh network namespace, and a scripted agent under the same code path as
// `chaperonectl run`: real curl for a GET, a POST with a JSON body and a
// request with a bearer token (recorded redacted), and one raw TCP
// connection. It then replays the session with `chaperonectl sessions
// replay`, verifies its hash chain, and stops everything it started.
package demo
