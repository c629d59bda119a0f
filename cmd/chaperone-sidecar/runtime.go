package main

import (
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"time"
)

// Runtime settings of the proxy, tuned for a sidecar that should stay
// small at idle and not spend its CPU on the collector under load. The
// GOGC and GOMEMLIMIT environment variables, when set, win.
const (
	// gcPercent lets the heap grow to three times the live data between
	// collections (the default is two): a sidecar's live heap is small, so
	// this costs a few MiB and saves collections on the data path.
	gcPercent = 200
	// memoryLimit is the soft limit that makes the collector run early
	// rather than let the heap grow past it.
	memoryLimit = 24 << 20
	// DefaultProcs (0) keeps Go's own choice: the CPUs the container's
	// CPU limit allows. Measured side by side (docs/performance.md), one
	// thread cost the same CPU per request and less throughput: with a
	// single P, a socket write long enough for sysmon to notice hands the P
	// to another thread, so the hand-offs it was to save came back as
	// thread wake-ups.
	DefaultProcs = 0
	// startupSettle is when start-up's background work is over and its
	// memory is released a second time.
	startupSettle = time.Second
)

// tuneRuntime applies procs, gcPercent and memoryLimit unless the
// environment sets them.
func tuneRuntime(procs int) {
	if _, ok := os.LookupEnv("GOMAXPROCS"); !ok && procs > 0 {
		runtime.GOMAXPROCS(procs)
	}
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(gcPercent)
	}
	if _, ok := os.LookupEnv("GOMEMLIMIT"); !ok {
		debug.SetMemoryLimit(memoryLimit)
	}
}

// releaseStartupMemory returns the heap pages freed after start-up
// (certificate parsing, rule compilation) to the OS and unmaps the
// executable's pages that start-up touched (see trimExecutable), so that
// neither counts against the idle sidecar's resident memory.
func releaseStartupMemory(log *slog.Logger) {
	debug.FreeOSMemory()
	n, err := trimExecutable()
	if err != nil {
		log.Debug("trim resident executable pages", "err", err)
		return
	}
	log.Debug("trimmed resident executable pages", "bytes", n)
}
