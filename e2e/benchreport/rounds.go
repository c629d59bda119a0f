package main

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// summary is what the report prints for one path and connection count
// measured over several rounds. On a shared machine one run of a path
// swings by up to 2×, so a single run says little: the report shows the
// median round and how far the rounds spread.
type summary struct {
	// result is the median round by requests/s, so that its p50 and p99
	// belong to the same run as its rate; its CPU per request and the
	// upstream's resumed share are replaced by their medians over the
	// rounds, each of which measures them independently of the rate.
	result
	rounds         int
	minRPS, maxRPS float64
}

// spread is the range of requests/s over the rounds, for the reader to
// judge the noise by.
func (s summary) spread() string {
	return fmt.Sprintf("%.0f–%.0f", s.minRPS, s.maxRPS)
}

// summarize groups results by path and connection count, in the order
// they first appear, and summarizes each group's rounds.
func summarize(results []result) []summary {
	type key struct {
		name  string
		conns int
	}
	var order []key
	groups := map[key][]result{}
	for _, r := range results {
		k := key{r.name, r.conns}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	out := make([]summary, 0, len(order))
	for _, k := range order {
		out = append(out, summarizeRounds(groups[k]))
	}
	return out
}

// summarizeRounds summarizes the rounds of one path (at least one).
func summarizeRounds(rounds []result) summary {
	byRate := slices.Clone(rounds)
	slices.SortStableFunc(byRate, func(a, b result) int { return cmp.Compare(a.wrk.rps, b.wrk.rps) })
	// With an even count there is no middle round; the lower of the two
	// is taken, so that the printed p50 and p99 are those of a real run.
	s := summary{result: byRate[(len(byRate)-1)/2], rounds: len(rounds),
		minRPS: byRate[0].wrk.rps, maxRPS: byRate[len(byRate)-1].wrk.rps}
	s.cpu = cpuUse{
		proxy: medianCPU(rounds, func(c cpuUse) time.Duration { return c.proxy }),
		srv:   medianCPU(rounds, func(c cpuUse) time.Duration { return c.srv }),
		up:    medianCPU(rounds, func(c cpuUse) time.Duration { return c.up }),
	}
	s.upResumed = medianShare(rounds)
	return s
}

// medianShare is the median of the upstream's resumed share over the
// rounds that measured it, -1 when none did.
func medianShare(rounds []result) float64 {
	var v []float64
	for _, r := range rounds {
		if r.upResumed >= 0 {
			v = append(v, r.upResumed)
		}
	}
	if len(v) == 0 {
		return -1
	}
	return median(v)
}

// medianCPU is the median of one CPU figure over the rounds that measured
// it (zero means not measured), zero when none did.
func medianCPU(rounds []result, field func(cpuUse) time.Duration) time.Duration {
	var v []time.Duration
	for _, r := range rounds {
		if d := field(r.cpu); d > 0 {
			v = append(v, d)
		}
	}
	return median(v)
}

// median of v (the mean of the two middle values for an even count), zero
// for none.
func median[T time.Duration | float64](v []T) T {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}
