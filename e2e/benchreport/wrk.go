package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/sandbox"
)

type wrkResult struct {
	p50, p99 time.Duration
	rps      float64
}

func execCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, name, args...)
}

func wrkArgs(url string, conns int, d time.Duration) []string {
	threads := min(conns, 2)
	return []string{"wrk", "--latency", "-t" + strconv.Itoa(threads), "-c" + strconv.Itoa(conns),
		"-d" + strconv.Itoa(int(d.Seconds())) + "s", url}
}

// wrkIn runs wrk inside sb against url.
func wrkIn(ctx context.Context, sb *sandbox.Sandbox, url string, conns int, d time.Duration) (wrkResult, error) {
	return wrkArgsIn(ctx, sb, wrkArgs(url, conns, d))
}

// wrkArgsIn runs the wrk command line args inside sb.
func wrkArgsIn(ctx context.Context, sb *sandbox.Sandbox, args []string) (wrkResult, error) {
	var out bytes.Buffer
	cmd, err := sb.Command(ctx, sandbox.ExecOptions{Path: args[0], Args: args[1:], Stdout: &out, Stderr: &out})
	if err != nil {
		return wrkResult{}, err
	}
	if err := sb.Start(cmd); err != nil {
		return wrkResult{}, err
	}
	if err := cmd.Wait(); err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %w\n%s", err, out.String())
	}
	return parseWrk(out.String())
}

var (
	pctRE = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
	rpsRE = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)`)
)

func parseWrk(s string) (wrkResult, error) {
	var r wrkResult
	if strings.Contains(s, "Non-2xx") || strings.Contains(s, "Socket errors") {
		return r, fmt.Errorf("wrk saw errors:\n%s", s)
	}
	for _, m := range pctRE.FindAllStringSubmatch(s, -1) {
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			return r, err
		}
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[m[3]]
		// Rounded: 2.01ms is 2009999.99… ns in floating point.
		d := time.Duration(math.Round(v * float64(unit)))
		if m[1] == "50" {
			r.p50 = d
		} else {
			r.p99 = d
		}
	}
	m := rpsRE.FindStringSubmatch(s)
	if m == nil || r.p50 == 0 {
		return r, errors.New("cannot parse wrk output:\n" + s)
	}
	rps, err := strconv.ParseFloat(m[1], 64)
	r.rps = rps
	return r, err
}
