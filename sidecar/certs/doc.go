// Package certs is the sidecar's TLS authority: a per-pod CA created at
// start whose private key never leaves process memory, the leaf
// certificates it mints for the names agents connect to (cached, one mint
// per name at a time), and the trust bundle (system roots plus this CA)
// written where agent containers read it.
//
// The names of the trust files and of the environment variables that point
// agent tools at them live here, so that the webhook and `chaperonectl run`
// give agents the same environment.
package certs
