package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/localserver"
	"github.com/chaperone-dev/chaperone/pkg/runner"
	"github.com/chaperone-dev/chaperone/pkg/sandbox"
)

type result struct {
	name  string
	conns int
	wrk   wrkResult
	// upResumed is the share of the TLS upstream's handshakes that resumed
	// a session, -1 when it made none.
	upResumed float64
	// cpu is what the proxy (nginx or the sidecar) and, for the sidecar,
	// the server spent per request; zero when not measured.
	cpu cpuUse
}

func run(ctx context.Context, cfg config, log *slog.Logger) error {
	work, err := os.MkdirTemp("", "chaperone-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	srv, err := localserver.Start(ctx, localserver.Options{Binary: filepath.Join(cfg.binDir, "chaperone-server"), DataDir: filepath.Join(work, "server")})
	if err != nil {
		return err
	}
	defer func() { _ = srv.Stop() }()

	plain, err := sandbox.New(ctx, sandbox.Options{Logger: log})
	if err != nil {
		return err
	}
	defer plain.Close()
	recorded, err := sandbox.New(ctx, sandbox.Options{Logger: log})
	if err != nil {
		return err
	}
	defer recorded.Close()

	if cfg.http {
		if err := runHTTPCase(ctx, cfg, work, srv, plain, recorded, log); err != nil {
			return err
		}
	}
	if !cfg.tls {
		return nil
	}
	tlsSB, err := sandbox.New(ctx, sandbox.Options{Logger: log})
	if err != nil {
		return err
	}
	defer tlsSB.Close()
	tlsResults, err := runTLSCase(ctx, cfg, work, srv, plain, tlsSB, log)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	reportTLS(os.Stdout, cfg, summarize(tlsResults))
	return nil
}

// runHTTPCase measures plain HTTP straight to the upstream, through nginx
// and through the sidecar, and prints the report.
func runHTTPCase(ctx context.Context, cfg config, work string, srv *localserver.Server, plain, recorded *sandbox.Sandbox, log *slog.Logger) error {
	up, err := startUpstream(ctx, plain.HostIP())
	if err != nil {
		return err
	}
	defer up.Close()
	ngx, err := startNginx(ctx, work, plain.HostIP(), up.Addr().String())
	if err != nil {
		return err
	}
	defer ngx.stop()
	relay, err := startGoRelay(ctx, plain.HostIP().String(), up.Addr().String())
	if err != nil {
		return err
	}
	defer relay.stop()

	// Each round runs every path, so a slow phase of the shared machine
	// hits them alike instead of one path's every run.
	var results []result
	var mem sidecarMemory
	for round := 1; round <= cfg.rounds; round++ {
		plainResults, err := runHTTPPlain(ctx, cfg, plain, up.Addr().String(), ngx, relay)
		if err != nil {
			return fmt.Errorf("round %d: %w", round, err)
		}
		results = append(results, plainResults...)
		side, err := runSidecarCase(ctx, cfg, srv, recorded, "http://"+up.Addr().String()+"/", log)
		if err != nil {
			return fmt.Errorf("round %d: %w", round, err)
		}
		results = append(results, side.results...)
		mem.add(side)
	}

	report(os.Stdout, cfg, summarize(results), mem)
	return nil
}

// runHTTPPlain runs wrk straight to the upstream, through nginx and
// through the Go relay, once for every connection count, with the
// proxies' CPU per request.
func runHTTPPlain(ctx context.Context, cfg config, plain *sandbox.Sandbox, upstream string, ngx *nginx, relay *goRelay) ([]result, error) {
	var results []result
	for _, c := range cfg.conns {
		for _, tc := range []struct {
			name, url string
			pid       int // the proxy's, 0 for none
		}{
			{"direct", "http://" + upstream + "/", 0},
			{"nginx", "http://" + ngx.addr + "/", ngx.pid},
			{"go-relay", "http://" + relay.addr + "/", relay.pid},
		} {
			var cpu0 time.Duration
			if tc.pid != 0 {
				cpu0, _ = treeCPU(tc.pid)
			}
			w, err := wrkIn(ctx, plain, tc.url, c, cfg.duration)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", tc.name, err)
			}
			r := result{name: tc.name, conns: c, wrk: w}
			if tc.pid != 0 {
				if cpu1, err := treeCPU(tc.pid); err == nil {
					r.cpu.proxy = perRequest(cpu1-cpu0, w, cfg.duration)
				}
			}
			results = append(results, r)
		}
	}
	return results, nil
}

// sidecarCase is the sidecar's share of the report from one round.
type sidecarCase struct {
	results []result
	idleRSS int64
	peakRSS int64
}

// sidecarMemory is the sidecar's RSS over the rounds' sessions: the range
// of their idle RSS (each taken before its session's first load) and the
// highest peak.
type sidecarMemory struct {
	sessions         int
	idleMin, idleMax int64
	peak             int64
}

func (m *sidecarMemory) add(sc sidecarCase) {
	if m.sessions == 0 || sc.idleRSS < m.idleMin {
		m.idleMin = sc.idleRSS
	}
	m.idleMax = max(m.idleMax, sc.idleRSS)
	m.peak = max(m.peak, sc.peakRSS)
	m.sessions++
}

// runSidecarCase runs every wrk load of a round as one recorded session,
// so the sidecar's idle memory is taken before any load and its peak
// covers the whole round.
func runSidecarCase(ctx context.Context, cfg config, srv *localserver.Server, sb *sandbox.Sandbox, url string, log *slog.Logger) (sidecarCase, error) {
	var sc sidecarCase
	var script strings.Builder
	for _, c := range cfg.conns {
		// The times let the CPU samples be cut per run; the pause lets the
		// spool and the server's ingest catch up, so the run's CPU counts
		// the recording it caused.
		fmt.Fprintf(&script, "echo \"@@ %d $(date +%%s%%N)\"; %s; echo \"@@end $(date +%%s%%N)\"; sleep %d\n",
			c, strings.Join(wrkArgs(url, c, cfg.duration), " "), int(settleTime.Seconds()))
	}
	var out, sidecarLog bytes.Buffer
	var pid int
	var mu sync.Mutex
	var cpu cpuLog
	stopPoll := make(chan struct{})
	var polled sync.WaitGroup
	_, err := runner.Run(ctx, runner.Options{
		Command:     []string{"/bin/sh", "-c", script.String()},
		NATSURL:     srv.Addrs.NATS,
		Token:       srv.WorkloadToken,
		SidecarPath: filepath.Join(cfg.binDir, "chaperone-sidecar"),
		User:        "bench",
		Sandbox:     sb,
		Stdout:      &out,
		Stderr:      &out,
		SidecarLog:  &sidecarLog,
		Logger:      log,
		Started: func(s runner.Started) {
			pid = s.SidecarPID
			// Idle is the steady state: the sidecar releases start-up memory
			// once serving and again a second later.
			time.Sleep(2 * time.Second)
			sc.idleRSS, _ = procStatus(pid, "VmRSS")
			polled.Add(1)
			go func() {
				defer polled.Done()
				for {
					if v, err := procStatus(pid, "VmHWM"); err == nil {
						mu.Lock()
						sc.peakRSS = max(sc.peakRSS, v)
						mu.Unlock()
					}
					side, err1 := procCPU(pid)
					server, err2 := procCPU(srv.PID())
					if err1 == nil && err2 == nil {
						cpu.add(cpuSample{at: time.Now(), proxy: side, srv: server})
					}
					select {
					case <-stopPoll:
						return
					case <-time.After(50 * time.Millisecond):
					}
				}
			}()
		},
	})
	close(stopPoll)
	polled.Wait()
	if err != nil {
		return sc, fmt.Errorf("sidecar run: %w\n%s\nsidecar log:\n%s", err, out.String(), sidecarLog.String())
	}
	for _, part := range strings.Split(out.String(), "@@ ")[1:] {
		nl := strings.IndexByte(part, '\n')
		head := strings.Fields(part[:nl])
		if len(head) != 2 {
			return sc, fmt.Errorf("parse wrk output: %q", part[:nl])
		}
		c, err := strconv.Atoi(head[0])
		if err != nil {
			return sc, fmt.Errorf("parse wrk output: %w", err)
		}
		body, endLine, _ := strings.Cut(part[nl+1:], "@@end ")
		w, err := parseWrk(body)
		if err != nil {
			return sc, fmt.Errorf("sidecar, %d connections: %w\n%s", c, err, part)
		}
		r := result{name: "sidecar", conns: c, wrk: w}
		start, err1 := strconv.ParseInt(head[1], 10, 64)
		end, err2 := strconv.ParseInt(strings.TrimSpace(endLine), 10, 64)
		if err1 == nil && err2 == nil {
			if used, ok := cpu.between(time.Unix(0, start), time.Unix(0, end).Add(settleTime)); ok {
				r.cpu = cpuUse{proxy: perRequest(used.proxy, w, cfg.duration), srv: perRequest(used.srv, w, cfg.duration)}
			}
		}
		sc.results = append(sc.results, r)
	}
	return sc, nil
}

// settleTime is the pause after each recorded run that lets its recording
// finish before the next run starts.
const settleTime = 2 * time.Second

// procStatus reads a kB field of /proc/PID/status in bytes.
func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// startUpstream serves 1 KiB responses on ip.
func startUpstream(ctx context.Context, ip netip.Addr) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", netip.AddrPortFrom(ip, 0).String())
	if err != nil {
		return nil, err
	}
	body := bytes.Repeat([]byte("x"), 1024)
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(body)
	})}
	go func() { _ = srv.Serve(ln) }()
	return ln, nil
}

type nginx struct {
	addr string
	pid  int // the master; its worker is its child
	stop func()
}

func startNginx(ctx context.Context, work string, ip netip.Addr, upstream string) (*nginx, error) {
	dir, addr, err := nginxPlace(work, "nginx", ip)
	if err != nil {
		return nil, err
	}
	conf := nginxConfig(dir, upstream, "", fmt.Sprintf(`  server {
    listen %s;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
`, addr))
	return launchNginx(ctx, dir, addr, conf)
}

// nginxPlace makes a directory for one nginx under work and picks a free
// address for it on ip.
func nginxPlace(work, name string, ip netip.Addr) (dir, addr string, err error) {
	dir = filepath.Join(work, name)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", "", err
	}
	ln, err := net.Listen("tcp", netip.AddrPortFrom(ip, 0).String())
	if err != nil {
		return "", "", err
	}
	addr = ln.Addr().String()
	_ = ln.Close()
	return dir, addr, nil
}

// nginxConfig wraps server (an nginx server block) and httpExtra (more
// http-level directives) in what every case shares: one worker in the
// foreground, every file under dir, a keep-alive pool to upstream.
func nginxConfig(dir, upstream, httpExtra, server string) string {
	return fmt.Sprintf(`worker_processes 1;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path %[1]s;
  proxy_temp_path %[1]s;
  fastcgi_temp_path %[1]s;
  uwsgi_temp_path %[1]s;
  scgi_temp_path %[1]s;
  upstream backend { server %[2]s; keepalive 32; }
%[3]s%[4]s}
`, dir, upstream, httpExtra, server)
}

// launchNginx writes conf to dir and runs nginx until it listens on addr.
func launchNginx(ctx context.Context, dir, addr, conf string) (*nginx, error) {
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	cmd := execCommand(ctx, "nginx", "-c", path, "-p", dir)
	// nginx forks its workers: a group of their own lets stop end them all,
	// so none outlives the run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop := func() {
		// SIGQUIT: the master stops and reaps its workers; the group kill is
		// the fallback.
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
	for i := 0; i < 100; i++ {
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			_ = c.Close()
			return &nginx{addr: addr, pid: cmd.Process.Pid, stop: stop}, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	return nil, fmt.Errorf("nginx did not listen on %s: %s", addr, stderr.String())
}

func report(w io.Writer, cfg config, results []summary, mem sidecarMemory) {
	fmt.Fprintf(w, "\nHTTP/1.1 keep-alive, 1 KiB responses, wrk %s per run\n", cfg.duration)
	fmt.Fprint(w, roundsLine(cfg))
	fmt.Fprintf(w, "%-9s %6s %10s %10s %12s %15s\n", "path", "conns", "p50", "p99", "req/s", "req/s spread")
	get := map[string]wrkResult{}
	for _, r := range results {
		fmt.Fprintf(w, "%-9s %6d %10s %10s %12.0f %15s\n", r.name, r.conns, r.wrk.p50, r.wrk.p99, r.wrk.rps, r.spread())
		get[fmt.Sprintf("%s/%d", r.name, r.conns)] = r.wrk
	}
	fmt.Fprintln(w)
	for _, c := range cfg.conns {
		d, n, s := get[fmt.Sprintf("direct/%d", c)], get[fmt.Sprintf("nginx/%d", c)], get[fmt.Sprintf("sidecar/%d", c)]
		addN, addS := n.p50-d.p50, s.p50-d.p50
		fmt.Fprintf(w, "%2d conns: added p50 nginx %v, sidecar %v (sidecar/nginx %.2f, target ≤ 1.00); throughput sidecar/nginx %.2f (target ≥ 0.80 at 16)\n",
			c, addN, addS, ratio(float64(addS), float64(addN)), ratio(s.rps, n.rps))
	}
	fmt.Fprintln(w, "The floor of a Go proxy on this machine: a Go relay that copies bytes both ways and parses, gates and records nothing:")
	for _, c := range cfg.conns {
		d, n, g := get[fmt.Sprintf("direct/%d", c)], get[fmt.Sprintf("nginx/%d", c)], get[fmt.Sprintf("go-relay/%d", c)]
		addN, addG := n.p50-d.p50, g.p50-d.p50
		fmt.Fprintf(w, "%2d conns: added p50 go-relay %v (go-relay/nginx %.2f); throughput go-relay/nginx %.2f\n",
			c, addG, ratio(float64(addG), float64(addN)), ratio(g.rps, n.rps))
	}
	fmt.Fprintln(w, "CPU per request (user+system, the sidecar's until its spool and the server's ingest caught up; median over rounds):")
	for _, c := range cfg.conns {
		nc, gc, sc := cpuOf(results, "nginx", c), cpuOf(results, "go-relay", c), cpuOf(results, "sidecar", c)
		fmt.Fprintf(w, "%2d conns: nginx %s; go-relay %s; sidecar %s (%.1f× nginx) + chaperone-server %s = %s\n",
			c, micros(nc.proxy), micros(gc.proxy), micros(sc.proxy), ratio(float64(sc.proxy), float64(nc.proxy)), micros(sc.srv), micros(sc.proxy+sc.srv))
	}
	for _, c := range cfg.conns {
		if c == 1 {
			continue
		}
		tp, lat := freeSidecar(runtime.NumCPU(), get[fmt.Sprintf("direct/%d", c)], get[fmt.Sprintf("nginx/%d", c)],
			cpuOf(results, "nginx", c).proxy, cpuOf(results, "sidecar", c).srv)
		fmt.Fprintf(w, "%2d conns: the server's ingest shares the %d cores here: a sidecar that cost nothing would reach ≤ %.2f× nginx's throughput, ≥ %.2f× its mean added latency\n",
			c, runtime.NumCPU(), tp, lat)
	}
	fmt.Fprintf(w, "sidecar RSS over %d sessions: idle %s MiB (target < 15), peak %.1f MiB (target < 40)\n",
		mem.sessions, mibRange(mem.idleMin, mem.idleMax), float64(mem.peak)/(1<<20))
}

// roundsLine says how the table's rows were chosen from the rounds.
func roundsLine(cfg config) string {
	return fmt.Sprintf("%d rounds, paths interleaved; each row is the path's median round by req/s (p50/p99 of that round), "+
		"req/s spread is min–max over the rounds, ratios are of the medians\n\n", cfg.rounds)
}

// mibRange prints a range of byte counts in MiB, one number when they
// round alike.
func mibRange(lo, hi int64) string {
	l, h := fmt.Sprintf("%.1f", float64(lo)/(1<<20)), fmt.Sprintf("%.1f", float64(hi)/(1<<20))
	if l == h {
		return l
	}
	return l + "–" + h
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func cpuOf(results []summary, name string, conns int) cpuUse {
	for _, r := range results {
		if r.name == name && r.conns == conns {
			return r.cpu
		}
	}
	return cpuUse{}
}

func micros(d time.Duration) string {
	return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
}
