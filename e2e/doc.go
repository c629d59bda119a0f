// Package e2e holds Chaperone's end-to-end tests and their harness: the real
// binaries (built once per test run, or taken from CHAPERONE_BIN), the real
// server with embedded NATS and SQLite, the real kernel's network namespaces
// and nftables, and real clients such as curl.
//
// The tests need root. Without it they fail with the reason; they never skip
// silently.
package e2e
