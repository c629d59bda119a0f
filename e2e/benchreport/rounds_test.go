package main

import (
	"testing"
	"time"
)

func round(name string, conns int, rps float64, p50 time.Duration, proxy time.Duration, resumed float64) result {
	return result{name: name, conns: conns, wrk: wrkResult{p50: p50, p99: 2 * p50, rps: rps}, cpu: cpuUse{proxy: proxy}, upResumed: resumed}
}

func TestSummarizeRounds(t *testing.T) {
	us := time.Microsecond
	for _, tc := range []struct {
		name             string
		rounds           []result
		wantRPS          float64
		wantP50          time.Duration
		wantProxy        time.Duration
		wantResumed      float64
		wantMin, wantMax float64
	}{
		{
			name:    "one round",
			rounds:  []result{round("nginx", 1, 100, 50*us, 20*us, -1)},
			wantRPS: 100, wantP50: 50 * us, wantProxy: 20 * us, wantResumed: -1, wantMin: 100, wantMax: 100,
		},
		{
			// The median round's p50 comes along with its rate; the CPU
			// is the median of its own.
			name: "odd: the middle round by rate",
			rounds: []result{
				round("nginx", 1, 300, 10*us, 40*us, 1),
				round("nginx", 1, 100, 90*us, 10*us, 0.5),
				round("nginx", 1, 200, 30*us, 90*us, 0.9),
			},
			wantRPS: 200, wantP50: 30 * us, wantProxy: 40 * us, wantResumed: 0.9, wantMin: 100, wantMax: 300,
		},
		{
			name: "even: the lower middle round, the mean of the middle CPU",
			rounds: []result{
				round("sidecar", 16, 400, 10*us, 10*us, -1),
				round("sidecar", 16, 100, 40*us, 20*us, -1),
				round("sidecar", 16, 300, 20*us, 40*us, -1),
				round("sidecar", 16, 200, 30*us, 80*us, -1),
			},
			wantRPS: 200, wantP50: 30 * us, wantProxy: 30 * us, wantResumed: -1, wantMin: 100, wantMax: 400,
		},
		{
			name: "rounds without a CPU figure are left out",
			rounds: []result{
				round("nginx", 1, 100, 10*us, 0, -1),
				round("nginx", 1, 200, 10*us, 60*us, 1),
				round("nginx", 1, 300, 10*us, 0, -1),
			},
			wantRPS: 200, wantP50: 10 * us, wantProxy: 60 * us, wantResumed: 1, wantMin: 100, wantMax: 300,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := summarizeRounds(tc.rounds)
			if s.rounds != len(tc.rounds) || s.wrk.rps != tc.wantRPS || s.wrk.p50 != tc.wantP50 || s.wrk.p99 != 2*tc.wantP50 {
				t.Errorf("median round: got %d rounds, %v req/s, p50 %v, p99 %v; want %d, %v, %v, %v",
					s.rounds, s.wrk.rps, s.wrk.p50, s.wrk.p99, len(tc.rounds), tc.wantRPS, tc.wantP50, 2*tc.wantP50)
			}
			if s.cpu.proxy != tc.wantProxy || s.cpu.srv != 0 {
				t.Errorf("cpu: got proxy %v srv %v, want %v and 0", s.cpu.proxy, s.cpu.srv, tc.wantProxy)
			}
			if s.upResumed != tc.wantResumed {
				t.Errorf("up resumed: got %v, want %v", s.upResumed, tc.wantResumed)
			}
			if s.minRPS != tc.wantMin || s.maxRPS != tc.wantMax {
				t.Errorf("spread: got %v–%v, want %v–%v", s.minRPS, s.maxRPS, tc.wantMin, tc.wantMax)
			}
		})
	}
}

func TestSummarizeGroupsInOrder(t *testing.T) {
	var results []result
	for r := 0; r < 3; r++ {
		for _, name := range []string{"direct", "nginx", "sidecar"} {
			for _, c := range []int{1, 16} {
				results = append(results, round(name, c, float64(100*(r+1)), time.Microsecond, 0, -1))
			}
		}
	}
	got := summarize(results)
	want := []struct {
		name  string
		conns int
	}{{"direct", 1}, {"direct", 16}, {"nginx", 1}, {"nginx", 16}, {"sidecar", 1}, {"sidecar", 16}}
	if len(got) != len(want) {
		t.Fatalf("got %d summaries, want %d", len(got), len(want))
	}
	for i, w := range want {
		if got[i].name != w.name || got[i].conns != w.conns || got[i].rounds != 3 || got[i].wrk.rps != 200 {
			t.Errorf("summary %d: got %s/%d, %d rounds, %v req/s; want %s/%d, 3 rounds, 200 req/s",
				i, got[i].name, got[i].conns, got[i].rounds, got[i].wrk.rps, w.name, w.conns)
		}
	}
	if s := got[0].spread(); s != "100–300" {
		t.Errorf("spread: got %q, want %q", s, "100–300")
	}
}
