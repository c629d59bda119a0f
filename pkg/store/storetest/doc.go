// Package storetest is the conformance suite for store.Store backends.
//
// A backend's test calls Run with a function that opens a fresh, empty
// store; Run checks appending and idempotency, the hash chain, event order,
// every session filter, cursor paging, blobs, not-found errors and chain
// verification, including (with Options.Tamper) that Verify names exactly
// the event whose stored bytes were changed.
//
// Times in the suite are whole microseconds, so backends that keep
// microsecond timestamps (PostgreSQL) pass the same checks as SQLite.
package storetest
