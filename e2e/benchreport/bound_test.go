package main

import (
	"math"
	"testing"
	"time"
)

func TestFreeSidecar(t *testing.T) {
	// 2 cores, nginx at 20000 req/s: 100 µs a request, 20 of them
	// nginx's. A server at 80 µs: 160 µs a request, 12500 req/s.
	direct := wrkResult{rps: 40000}
	nginx := wrkResult{rps: 20000}
	tp, lat := freeSidecar(2, direct, nginx, 20*time.Microsecond, 80*time.Microsecond)
	if math.Abs(tp-0.625) > 1e-9 {
		t.Errorf("throughput %v, want 0.625", tp)
	}
	// Added mean latency per connection: 1/12500-1/40000 = 55 µs against
	// nginx's 1/20000-1/40000 = 25 µs.
	if math.Abs(lat-2.2) > 1e-9 {
		t.Errorf("latency %v, want 2.2", lat)
	}
	if tp, lat := freeSidecar(2, direct, wrkResult{}, 0, 0); tp != 0 || lat != 0 {
		t.Errorf("no nginx run: %v %v", tp, lat)
	}
}
