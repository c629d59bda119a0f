package proccpu

import (
	"runtime"
	"testing"
	"time"
)

func TestUsedGrows(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" {
		t.Skip("no getrusage here: Used is 0")
	}
	before := Used()
	deadline := time.Now().Add(50 * time.Millisecond)
	n := 0
	for time.Now().Before(deadline) {
		n++
	}
	if after := Used(); after <= before {
		t.Fatalf("CPU time did not grow over 50 ms of spinning (%d loops): %v → %v", n, before, after)
	}
}
