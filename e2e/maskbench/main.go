// Command maskbench measures secret masking side by side with gitleaks
// v8.30.1 (built here from its Go module, never committed): throughput in
// MB/s of CPU time on one core, on text dense with the corpus' secrets and
// look-alikes and on clean text, and recall on the corpus samples. It
// prints both with ratios. It is a module of its own so that the main
// module does not take gitleaks' dependencies; `make bench` runs it.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/zricethezav/gitleaks/v8/detect"

	"github.com/chaperone-dev/chaperone/pkg/mask"
	"github.com/chaperone-dev/chaperone/pkg/mask/corpus"
)

// scanner is one side of the comparison: it returns text with what it
// found replaced.
type scanner struct {
	name string
	scan func(string) string
}

func main() {
	size := flag.Int("size", 2<<20, "bytes of text per throughput run")
	rounds := flag.Int("rounds", 3, "runs per measurement; the fastest counts")
	perRule := flag.Int("per-rule", 14, "corpus samples per rule for recall")
	chunk := flag.Int("chunk", 64<<10, "bytes per scan call, as bodies reach the masker (gitleaks slows down on large fragments)")
	flag.Parse()
	runtime.GOMAXPROCS(1)
	zerolog.SetGlobalLevel(zerolog.Disabled)
	if err := run(*size, *rounds, *perRule, *chunk); err != nil {
		fmt.Fprintln(os.Stderr, "maskbench:", err)
		os.Exit(1)
	}
}

func run(size, rounds, perRule, chunk int) error {
	m, err := mask.New(mask.Options{Key: []byte("maskbench")})
	if err != nil {
		return err
	}
	gl, err := detect.NewDetectorDefaultConfig()
	if err != nil {
		return fmt.Errorf("gitleaks: %w", err)
	}
	sides := []scanner{
		{"chaperone", func(s string) string { out, _ := m.Mask(s); return out }},
		{"gitleaks v8.30.1", func(s string) string {
			var secrets []string
			for _, f := range gl.DetectString(s) {
				if f.Secret != "" {
					secrets = append(secrets, f.Secret)
				}
			}
			for _, sec := range secrets {
				s = strings.ReplaceAll(s, sec, "[REDACTED]")
			}
			return s
		}},
	}
	dense := corpus.Text(7, size)
	var clean strings.Builder
	for clean.Len() < size {
		clean.WriteString("The build ran 42 tests in 3.1s; see https://ci.internal/job/1234 for the log of step compile.\n")
	}
	// PII samples (email addresses, card numbers) are left out: gitleaks
	// has no rules for them, and the sidecar masks them only on request.
	var samples []corpus.Sample
	for _, s := range corpus.Generate(11, perRule) {
		if !strings.HasPrefix(s.Rule, "pii-") {
			samples = append(samples, s)
		}
	}
	type result struct{ dense, clean, recall float64 }
	res := make([]result, len(sides))
	for i, sd := range sides {
		res[i].dense = throughput(sd.scan, dense, chunk, rounds)
		res[i].clean = throughput(sd.scan, clean.String(), chunk, rounds)
		found := 0
		for _, s := range samples {
			if !s.Leaked(sd.scan(s.Text)) {
				found++
			}
		}
		res[i].recall = float64(found) / float64(len(samples))
	}
	fmt.Printf("secret masking, one core, CPU time (recall on %d corpus samples; %s of text per throughput run, in %d KiB pieces)\n",
		len(samples), mb(size), chunk>>10)
	fmt.Printf("%-18s %14s %14s %8s\n", "", "dense MB/s", "clean MB/s", "recall")
	for i, sd := range sides {
		fmt.Printf("%-18s %14.1f %14.1f %7.1f%%\n", sd.name, res[i].dense, res[i].clean, 100*res[i].recall)
	}
	a, b := res[0], res[1]
	fmt.Printf("%-18s %13.1f× %13.1f× %+7.1f pts\n", "chaperone/gitleaks", a.dense/b.dense, a.clean/b.clean, 100*(a.recall-b.recall))
	return nil
}

// throughput returns the best MB/s over rounds runs of scan on text in
// pieces of chunk bytes, by the process's CPU time, so that a busy
// machine does not count.
func throughput(scan func(string) string, text string, chunk, rounds int) float64 {
	best := time.Duration(0)
	for range rounds {
		runtime.GC()
		start := cpuTime()
		for i := 0; i < len(text); i += chunk {
			scan(text[i:min(i+chunk, len(text))])
		}
		d := cpuTime() - start
		if best == 0 || d < best {
			best = d
		}
	}
	return float64(len(text)) / 1e6 / best.Seconds()
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func mb(n int) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }
