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
	"strconv"
	"strings"
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

// startTLSUpstream serves 1 KiB responses over TLS on ip: the leaf for
// upstreamName to that SNI, the leaf for the IP to any other.
func startTLSUpstream(ctx context.Context, ip netip.Addr, f *tlsFiles) (net.Listener, error) {
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
// keep-alive and with a new connection per request.
func runTLSCase(ctx context.Context, cfg config, work string, srv *localserver.Server, plain, recorded *sandbox.Sandbox, log *slog.Logger) ([]result, error) {
	f, err := makeTLSFiles(ctx, work, plain.HostIP())
	if err != nil {
		return nil, err
	}
	script := filepath.Join(work, "close.lua")
	if err := os.WriteFile(script, []byte(closeScript), 0o644); err != nil {
		return nil, err
	}
	up, err := startTLSUpstream(ctx, plain.HostIP(), f)
	if err != nil {
		return nil, err
	}
	defer up.Close()
	ngx, err := startNginxTLS(ctx, work, plain.HostIP(), up.Addr().String(), f)
	if err != nil {
		return nil, err
	}
	defer ngx.stop()

	var results []result
	for _, mode := range []string{modeKeepAlive, modeNewConn} {
		for _, c := range cfg.conns {
			for _, tc := range []struct{ name, url string }{
				{"direct", "https://" + up.Addr().String() + "/"},
				{"nginx", "https://" + ngx.addr + "/"},
			} {
				w, err := wrkArgsIn(ctx, plain, wrkModeArgs(tc.url, c, cfg.duration, mode, script))
				if err != nil {
					return nil, fmt.Errorf("tls %s %s: %w", tc.name, mode, err)
				}
				results = append(results, result{name: tc.name + "/" + mode, conns: c, wrk: w})
			}
		}
	}

	// The sidecar: one recorded session for every load.
	url := "https://" + up.Addr().String() + "/"
	var sh strings.Builder
	// Warm the leaf cache: the target is for a cached leaf.
	fmt.Fprintf(&sh, "curl -s -o /dev/null %s\n", url)
	for _, mode := range []string{modeKeepAlive, modeNewConn} {
		for _, c := range cfg.conns {
			fmt.Fprintf(&sh, "echo '@@ %s %d'; %s\n", mode, c, strings.Join(wrkModeArgs(url, c, cfg.duration, mode, script), " "))
		}
	}
	var out, sidecarLog bytes.Buffer
	if _, err := runner.Run(ctx, runner.Options{
		Command:     []string{"/bin/sh", "-c", sh.String()},
		ExtraCA:     []string{f.caFile},
		NATSURL:     srv.Addrs.NATS,
		Token:       srv.WorkloadToken,
		SidecarPath: filepath.Join(cfg.binDir, "chaperone-sidecar"),
		User:        "bench",
		Sandbox:     recorded,
		Stdout:      &out,
		Stderr:      &out,
		SidecarLog:  &sidecarLog,
		Logger:      log,
	}); err != nil {
		return nil, fmt.Errorf("sidecar tls run: %w\n%s\nsidecar log:\n%s", err, out.String(), sidecarLog.String())
	}
	for _, part := range strings.Split(out.String(), "@@ ")[1:] {
		nl := strings.IndexByte(part, '\n')
		head := strings.Fields(part[:nl])
		if len(head) != 2 {
			return nil, fmt.Errorf("parse wrk output: %q", part[:nl])
		}
		c, err := strconv.Atoi(head[1])
		if err != nil {
			return nil, fmt.Errorf("parse wrk output: %w", err)
		}
		w, err := parseWrk(part[nl+1:])
		if err != nil {
			return nil, fmt.Errorf("sidecar tls %s, %d connections: %w\n%s", head[0], c, err, part)
		}
		results = append(results, result{name: "sidecar/" + head[0], conns: c, wrk: w})
	}
	return results, nil
}

func reportTLS(w io.Writer, cfg config, results []result) {
	fmt.Fprintf(w, "\nHTTPS (HTTP/1.1 over TLS), 1 KiB responses, wrk %s per run; sidecar intercepts, nginx terminates and re-encrypts (upstream verified, keep-alive)\n\n", cfg.duration)
	fmt.Fprintf(w, "%-20s %6s %10s %10s %12s\n", "path", "conns", "p50", "p99", "req/s")
	get := map[string]wrkResult{}
	for _, r := range results {
		fmt.Fprintf(w, "%-20s %6d %10s %10s %12.0f\n", r.name, r.conns, r.wrk.p50, r.wrk.p99, r.wrk.rps)
		get[fmt.Sprintf("%s/%d", r.name, r.conns)] = r.wrk
	}
	fmt.Fprintln(w)
	for _, c := range cfg.conns {
		k := func(path, mode string) wrkResult { return get[fmt.Sprintf("%s/%s/%d", path, mode, c)] }
		d, n, s := k("direct", modeKeepAlive), k("nginx", modeKeepAlive), k("sidecar", modeKeepAlive)
		addN, addS := n.p50-d.p50, s.p50-d.p50
		fmt.Fprintf(w, "%2d conns keep-alive: added p50 nginx %v, sidecar %v (sidecar/nginx %.2f, target ≤ 1.00)\n",
			c, addN, addS, ratio(float64(addS), float64(addN)))
		// wrk's latency starts after the handshake, so the cost of a new
		// connection shows in the request rate: time per request is 1/rate.
		dn, nn, sn := k("direct", modeNewConn), k("nginx", modeNewConn), k("sidecar", modeNewConn)
		fmt.Fprintf(w, "%2d conns new-conn:   time per request sidecar/direct %.2f (target < 2.00, leaf cached), nginx/direct %.2f\n",
			c, ratio(dn.rps, sn.rps), ratio(dn.rps, nn.rps))
	}
}
