// Package client is a typed Go client of the chaperone-server HTTP API
// (package api): session listing with paging, summaries, event streams,
// replay over server-sent events, chain verification, server info and blob
// download. chaperonectl and the end-to-end tests use it.
//
// Errors the server answers are returned as *APIError, carrying the HTTP
// status, the server's message and the parameter at fault.
package client
