package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTick is the unit of utime and stime in /proc/PID/stat (USER_HZ,
// 100 on every Linux architecture Go supports).
const clockTick = 10 * time.Millisecond

// procCPU is the CPU time (user + system, all threads) pid has used.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces and parentheses: fields count from
	// the last ')'. utime and stime are fields 14 and 15 of the line.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return time.Duration(ut+st) * clockTick, nil
}

// treeCPU is procCPU of pid plus its live children (nginx's workers).
func treeCPU(pid int) (time.Duration, error) {
	total, err := procCPU(pid)
	if err != nil {
		return 0, err
	}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, c := range strings.Fields(string(b)) {
			if cpid, err := strconv.Atoi(c); err == nil {
				if d, err := procCPU(cpid); err == nil {
					total += d
				}
			}
		}
	}
	return total, nil
}

// cpuSample is the CPU time used so far by the processes a case watches.
type cpuSample struct {
	at    time.Time
	proxy time.Duration // the sidecar
	srv   time.Duration // chaperone-server
	up    time.Duration // this process: the upstream it serves
	// hs and resumed count the TLS upstream's handshakes and those that
	// resumed a session (the TLS case only).
	hs, resumed int64
}

// cpuLog samples CPU times while a recorded run goes on, so that a run's
// share can be taken between the times its script printed.
type cpuLog struct {
	mu      sync.Mutex
	samples []cpuSample
}

func (l *cpuLog) add(s cpuSample) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.samples = append(l.samples, s)
}

// between returns the CPU used from the last sample at or before from to
// the first sample at or after to.
func (l *cpuLog) between(from, to time.Time) (used cpuSample, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var a, b *cpuSample
	for i := range l.samples {
		s := &l.samples[i]
		if !s.at.After(from) {
			a = s
		}
		if b == nil && !s.at.Before(to) {
			b = s
		}
	}
	if b == nil && len(l.samples) > 0 {
		// The run was the last: its settle time ended with the sampling.
		b = &l.samples[len(l.samples)-1]
	}
	if a == nil || b == nil {
		return cpuSample{}, false
	}
	return cpuSample{proxy: b.proxy - a.proxy, srv: b.srv - a.srv, up: b.up - a.up, hs: b.hs - a.hs, resumed: b.resumed - a.resumed}, true
}

// cpuUse is the CPU a case's processes spent, per request.
type cpuUse struct {
	proxy, srv time.Duration
	up         time.Duration // the upstream; measured in the TLS case only
}

func perRequest(d time.Duration, r wrkResult, dur time.Duration) time.Duration {
	n := r.rps * dur.Seconds()
	if n <= 0 {
		return 0
	}
	return time.Duration(float64(d) / n)
}
