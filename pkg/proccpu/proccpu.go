// Package proccpu reads the CPU time the current process has used, for
// benchmarks that report CPU per operation: on two shared cores wall time
// swings with other work, CPU time much less.
package proccpu

import "time"

// Used is the user plus system CPU time the process has used so far, 0
// where it cannot be read (then a benchmark leaves its CPU metric out).
func Used() time.Duration { return used() }
