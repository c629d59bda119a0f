package main

import (
	"testing"
	"time"
)

// wrkOutput is wrk 4.1's report for a run with --latency.
const wrkOutput = `Running 2s test @ http://10.0.0.1:8080/
  1 threads and 1 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    40.12us   90.01us   3.10ms   98.90%
    Req/Sec    25.01k     1.20k   27.00k    80.00%
  Latency Distribution
     50%   24.00us
     75%   30.00us
     90%   41.00us
     99%    2.01ms
  50012 requests in 2.00s, 55.00MB read
Requests/sec:  25006.00
Transfer/sec:     27.50MB
`

func TestParseWrk(t *testing.T) {
	got, err := parseWrk(wrkOutput)
	if err != nil {
		t.Fatal(err)
	}
	// 2.01ms must not print as 2.009999ms.
	want := wrkResult{p50: 24 * time.Microsecond, p99: 2010 * time.Microsecond, rps: 25006}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestParseWrkRejects(t *testing.T) {
	for name, out := range map[string]string{
		"socket errors": wrkOutput + "  Socket errors: connect 1, read 0, write 0, timeout 0\n",
		"non-2xx":       wrkOutput + "  Non-2xx or 3xx responses: 3\n",
		"no latency":    "Requests/sec:  25006.00\n",
		"empty":         "",
	} {
		if _, err := parseWrk(out); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
