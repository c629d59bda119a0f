//go:build !unix

package ingest

import "time"

// cpuTime is 0 where the process's CPU time is not read: the benchmarks
// then leave out their CPU metric.
func cpuTime() time.Duration { return 0 }
