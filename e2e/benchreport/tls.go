package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log"
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
	"sync/atomic"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/localserver"
	"github.com/chaperone-dev/chaperone/pkg/runner"
	"github.com/chaperone-dev/chaperone/pkg/sandbox"
	"github.com/chaperone-dev/chaperone/sidecar/certs"
)

// TLS load modes.
const (
	modeKeepAlive = "keep-alive"
	modeNewConn   = "new-conn" // "Connection: close": one TLS handshake per request
)

// tlsFiles are the test CA and the certificates of the TLS case.
type tlsFiles struct {
	caFile       string
	certFile     string // the upstream's leaf for its IP, PEM, also nginx's
	keyFile      string
	byIP, byName *tls.Certificate
}

// upstreamName is the name nginx verifies the upstream as.
const upstreamName = "upstream.bench"

func makeTLSFiles(ctx context.Context, dir string, ip netip.Addr) (*tlsFiles, error) {
	ca, err := certs.New(certs.Options{Session: "bench-upstream"})
	if err != nil {
		return nil, err
	}
	f := &tlsFiles{caFile: filepath.Join(dir, "ca.crt"), certFile: filepath.Join(dir, "leaf.crt"), keyFile: filepath.Join(dir, "leaf.key")}
	if f.byIP, err = ca.Leaf(ctx, ip.String()); err != nil {
		return nil, err
	}
	if f.byName, err = ca.Leaf(ctx, upstreamName); err != nil {
		return nil, err
	}
	key, err := x509.MarshalPKCS8PrivateKey(f.byIP.PrivateKey)
	if err != nil {
		return nil, err
	}
	var chain bytes.Buffer
	for _, der := range f.byIP.Certificate {
		_ = pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	for path, data := range map[string][]byte{
		f.caFile:   ca.CertPEM(),
		f.certFile: chain.Bytes(),
		f.keyFile:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}),
	} {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// handshakes counts a TLS server's handshakes and those that resumed a
// session.
type handshakes struct{ all, resumed atomic.Int64 }

// share is the resumed share of the handshakes between two counts, -1
// when there were none.
func share(all, resumed int64) float64 {
	if all == 0 {
		return -1
	}
	return float64(resumed) / float64(all)
}

// startTLSUpstream serves 1 KiB responses over TLS on ip: the leaf for
// upstreamName to that SNI, the leaf for the IP to any other. It counts
// its handshakes in hs.
func startTLSUpstream(ctx context.Context, ip netip.Addr, f *tlsFiles, hs *handshakes) (net.Listener, error) {
	var lc net.ListenConfig
	raw, err := lc.Listen(ctx, "tcp", netip.AddrPortFrom(ip, 0).String())
	if err != nil {
		return nil, err
	}
	ln := tls.NewListener(raw, &tls.Config{
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if h.ServerName == upstreamName {
				return f.byName, nil
			}
			return f.byIP, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			hs.all.Add(1)
			if cs.DidResume {
				hs.resumed.Add(1)
			}
			return nil
		},
	})
	body := bytes.Repeat([]byte("x"), 1024)
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(body)
	}), ErrorLog: log.New(io.Discard, "", 0)} // clients that hang up mid-handshake are normal under load
	go func() { _ = srv.Serve(ln) }()
	return ln, nil
}

// startNginxTLS terminates TLS and re-encrypts to upstream, verifying it
// against the test CA, with keep-alive upstream connections.
func startNginxTLS(ctx context.Context, work string, ip netip.Addr, upstream string, f *tlsFiles) (*nginx, error) {
	dir, addr, err := nginxPlace(work, "nginx-tls", ip)
	if err != nil {
		return nil, err
	}
	conf := nginxConfig(dir, upstream, "  ssl_session_cache shared:SSL:1m;\n", fmt.Sprintf(`  server {
    listen %[1]s ssl;
    ssl_certificate %[2]s;
    ssl_certificate_key %[3]s;
    location / {
      proxy_pass https://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate %[4]s;
      proxy_ssl_name %[5]s;
      proxy_ssl_server_name on;
      proxy_ssl_session_reuse on;
    }
  }
`, addr, f.certFile, f.keyFile, f.caFile, upstreamName))
	return launchNginx(ctx, dir, addr, conf)
}

// closeScript makes wrk ask for a new connection per request.
const closeScript = `wrk.headers["Connection"] = "close"` + "\n"

func wrkModeArgs(url string, conns int, d time.Duration, mode, script string) []string {
	args := wrkArgs(url, conns, d)
	if mode == modeNewConn {
		args = append(args[:len(args)-1], "-s", script, url)
	}
	return args
}

// runTLSCase measures HTTPS straight to the upstream, through nginx
// re-encrypting, and through the sidecar intercepting, each with
// keep-alive and with a new connection per request. Besides wrk's numbers
// it takes the CPU each run cost per request: nginx's (master and worker),
// the sidecar's and the server's (until the recording caught up), and the
// upstream's (it runs in this process, which does nothing else meanwhile).
func runTLSCase(ctx context.Context, cfg config, work string, srv *localserver.Server, plain, recorded *sandbox.Sandbox, log *slog.Logger) ([]result, error) {
	f, err := makeTLSFiles(ctx, work, plain.HostIP())
	if err != nil {
		return nil, err
	}
	script := filepath.Join(work, "close.lua")
	if err := os.WriteFile(script, []byte(closeScript), 0o644); err != nil {
		return nil, err
	}
	var hs handshakes
	up, err := startTLSUpstream(ctx, plain.HostIP(), f, &hs)
	if err != nil {
		return nil, err
	}
	defer up.Close()
	ngx, err := startNginxTLS(ctx, work, plain.HostIP(), up.Addr().String(), f)
	if err != nil {
		return nil, err
	}
	defer ngx.stop()
	// Each round runs every path, so a slow phase of the shared machine
	// hits them alike instead of one path's every run.
	var results []result
	for round := 1; round <= cfg.rounds; round++ {
		plainResults, err := runTLSPlain(ctx, cfg, plain, up.Addr().String(), ngx, script, &hs)
		if err != nil {
			return nil, fmt.Errorf("round %d: %w", round, err)
		}
		results = append(results, plainResults...)
		side, err := runTLSSidecar(ctx, cfg, srv, recorded, "https://"+up.Addr().String()+"/", f.caFile, script, &hs, log)
		if err != nil {
			return nil, fmt.Errorf("round %d: %w", round, err)
		}
		results = append(results, side...)
	}
	return results, nil
}

// runTLSPlain runs wrk straight to the upstream and through nginx, once
// for every mode and connection count, with the CPU per request of nginx
// and of the upstream (this process, which does nothing else meanwhile).
func runTLSPlain(ctx context.Context, cfg config, plain *sandbox.Sandbox, upstream string, ngx *nginx, script string, hs *handshakes) ([]result, error) {
	self := os.Getpid()
	var results []result
	for _, mode := range []string{modeKeepAlive, modeNewConn} {
		for _, c := range cfg.conns {
			for _, tc := range []struct{ name, url string }{
				{"direct", "https://" + upstream + "/"},
				{"nginx", "https://" + ngx.addr + "/"},
			} {
				ngx0, _ := treeCPU(ngx.pid)
				up0, _ := procCPU(self)
				hs0, res0 := hs.all.Load(), hs.resumed.Load()
				w, err := wrkArgsIn(ctx, plain, wrkModeArgs(tc.url, c, cfg.duration, mode, script))
				if err != nil {
					return nil, fmt.Errorf("tls %s %s: %w", tc.name, mode, err)
				}
				r := result{name: tc.name + "/" + mode, conns: c, wrk: w, upResumed: share(hs.all.Load()-hs0, hs.resumed.Load()-res0)}
				ngx1, err1 := treeCPU(ngx.pid)
				up1, err2 := procCPU(self)
				if err1 == nil && err2 == nil {
					r.cpu.up = perRequest(up1-up0, w, cfg.duration)
					if tc.name == "nginx" {
						r.cpu.proxy = perRequest(ngx1-ngx0, w, cfg.duration)
					}
				}
				results = append(results, r)
			}
		}
	}
	return results, nil
}

// runTLSSidecar runs every load of a round through the sidecar as one
// recorded session, with a pause after each run that lets its recording
// finish.
func runTLSSidecar(ctx context.Context, cfg config, srv *localserver.Server, sb *sandbox.Sandbox, url, caFile, script string, hs *handshakes, log *slog.Logger) ([]result, error) {
	var sh strings.Builder
	// Warm the leaf cache (the target is for a cached leaf) and the
	// upstream session cache.
	fmt.Fprintf(&sh, "curl -s -o /dev/null %s; sleep 1\n", url)
	for _, mode := range []string{modeKeepAlive, modeNewConn} {
		for _, c := range cfg.conns {
			fmt.Fprintf(&sh, "echo \"@@ %s %d $(date +%%s%%N)\"; %s; echo \"@@end $(date +%%s%%N)\"; sleep %d\n",
				mode, c, strings.Join(wrkModeArgs(url, c, cfg.duration, mode, script), " "), int(settleTime.Seconds()))
		}
	}
	var out, sidecarLog bytes.Buffer
	var cpu cpuLog
	stop := func() {}
	_, err := runner.Run(ctx, runner.Options{
		Command:     []string{"/bin/sh", "-c", sh.String()},
		ExtraCA:     []string{caFile},
		NATSURL:     srv.Addrs.NATS,
		Token:       srv.WorkloadToken,
		SidecarPath: filepath.Join(cfg.binDir, "chaperone-sidecar"),
		User:        "bench",
		Sandbox:     sb,
		Stdout:      &out,
		Stderr:      &out,
		SidecarLog:  &sidecarLog,
		Logger:      log,
		Started:     func(s runner.Started) { stop = watchCPU(s.SidecarPID, srv.PID(), hs, &cpu) },
	})
	stop()
	if err != nil {
		return nil, fmt.Errorf("sidecar tls run: %w\n%s\nsidecar log:\n%s", err, out.String(), sidecarLog.String())
	}
	var results []result
	for _, part := range strings.Split(out.String(), "@@ ")[1:] {
		nl := strings.IndexByte(part, '\n')
		head := strings.Fields(part[:nl])
		if len(head) != 3 {
			return nil, fmt.Errorf("parse wrk output: %q", part[:nl])
		}
		c, err := strconv.Atoi(head[1])
		if err != nil {
			return nil, fmt.Errorf("parse wrk output: %w", err)
		}
		body, endLine, _ := strings.Cut(part[nl+1:], "@@end ")
		w, err := parseWrk(body)
		if err != nil {
			return nil, fmt.Errorf("sidecar tls %s, %d connections: %w\n%s\nsidecar log:\n%s", head[0], c, err, part, sidecarLog.String())
		}
		r := result{name: "sidecar/" + head[0], conns: c, wrk: w, upResumed: -1}
		start, err1 := strconv.ParseInt(head[2], 10, 64)
		end, err2 := strconv.ParseInt(strings.TrimSpace(endLine), 10, 64)
		if err1 == nil && err2 == nil {
			if used, ok := cpu.between(time.Unix(0, start), time.Unix(0, end).Add(settleTime)); ok {
				r.upResumed = share(used.hs, used.resumed)
				r.cpu = cpuUse{
					proxy: perRequest(used.proxy, w, cfg.duration),
					srv:   perRequest(used.srv, w, cfg.duration),
					up:    perRequest(used.up, w, cfg.duration),
				}
			}
		}
		results = append(results, r)
	}
	return results, nil
}

// watchCPU samples the CPU time of the sidecar (pid), of the server and
// of this process, and the upstream's handshakes hs, every 50 ms into l
// until the returned stop is called.
func watchCPU(pid, srvPID int, hs *handshakes, l *cpuLog) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		self := os.Getpid()
		for {
			side, err1 := procCPU(pid)
			server, err2 := procCPU(srvPID)
			up, err3 := procCPU(self)
			if err1 == nil && err2 == nil && err3 == nil {
				l.add(cpuSample{at: time.Now(), proxy: side, srv: server, up: up, hs: hs.all.Load(), resumed: hs.resumed.Load()})
			}
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func reportTLS(w io.Writer, cfg config, results []summary) {
	fmt.Fprintf(w, "\nHTTPS (HTTP/1.1 over TLS), 1 KiB responses, wrk %s per run; sidecar intercepts, nginx terminates and re-encrypts (upstream verified, keep-alive)\n", cfg.duration)
	fmt.Fprint(w, "CPU per request (median over rounds): the proxy's (nginx, or the sidecar until its spool caught up), chaperone-server's, the upstream's; up resumed: the share of the upstream's TLS handshakes that resumed a session\n")
	fmt.Fprint(w, roundsLine(cfg))
	fmt.Fprintf(w, "%-20s %6s %10s %10s %10s %13s %10s %10s %10s %10s\n", "path", "conns", "p50", "p99", "req/s", "req/s spread", "cpu proxy", "cpu server", "cpu up", "up resumed")
	get := map[string]summary{}
	for _, r := range results {
		resumed := "-"
		if r.upResumed >= 0 {
			resumed = fmt.Sprintf("%.0f%%", 100*r.upResumed)
		}
		fmt.Fprintf(w, "%-20s %6d %10s %10s %10.0f %13s %10s %10s %10s %10s\n", r.name, r.conns, r.wrk.p50, r.wrk.p99, r.wrk.rps, r.spread(),
			microsOrDash(r.cpu.proxy), microsOrDash(r.cpu.srv), microsOrDash(r.cpu.up), resumed)
		get[fmt.Sprintf("%s/%d", r.name, r.conns)] = r
	}
	fmt.Fprintln(w)
	for _, c := range cfg.conns {
		k := func(path, mode string) summary { return get[fmt.Sprintf("%s/%s/%d", path, mode, c)] }
		d, n, s := k("direct", modeKeepAlive).wrk, k("nginx", modeKeepAlive).wrk, k("sidecar", modeKeepAlive).wrk
		addN, addS := n.p50-d.p50, s.p50-d.p50
		fmt.Fprintf(w, "%2d conns keep-alive: added p50 nginx %v, sidecar %v (sidecar/nginx %.2f, target ≤ 1.00)\n",
			c, addN, addS, ratio(float64(addS), float64(addN)))
		if c > 1 {
			tp, lat := freeSidecar(runtime.NumCPU(), d, n, k("nginx", modeKeepAlive).cpu.proxy, k("sidecar", modeKeepAlive).cpu.srv)
			fmt.Fprintf(w, "%2d conns keep-alive: the server's ingest shares the %d cores here: a sidecar that cost nothing would reach ≤ %.2f× nginx's throughput, ≥ %.2f× its mean added latency\n",
				c, runtime.NumCPU(), tp, lat)
		}
		// wrk's latency starts after the handshake, so the cost of a new
		// connection shows in the request rate: time per request is 1/rate.
		dn, nn, sn := k("direct", modeNewConn), k("nginx", modeNewConn), k("sidecar", modeNewConn)
		fmt.Fprintf(w, "%2d conns new-conn:   time per request sidecar/direct %.2f (target < 2.00, leaf cached), nginx/direct %.2f\n",
			c, ratio(dn.wrk.rps, sn.wrk.rps), ratio(dn.wrk.rps, nn.wrk.rps))
		fmt.Fprintf(w, "%2d conns new-conn:   CPU per request direct (upstream) %s; nginx %s + upstream %s; sidecar %s + upstream %s (+ server %s)\n",
			c, micros(dn.cpu.up), micros(nn.cpu.proxy), micros(nn.cpu.up), micros(sn.cpu.proxy), micros(sn.cpu.up), micros(sn.cpu.srv))
	}
}

func microsOrDash(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return micros(d)
}
