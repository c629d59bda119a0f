package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/client"
	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/localserver"
	"github.com/chaperone-dev/chaperone/pkg/mask/corpus"
	"github.com/chaperone-dev/chaperone/pkg/runner"
)

// startEchoUpstream serves /echo on ip: the response repeats the request's
// URL, headers and body, so secrets travel both ways.
func startEchoUpstream(t *testing.T, ip netip.Addr) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", netip.AddrPortFrom(ip, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if ct := r.Header.Get("Content-Type"); ct != "" {
			w.Header().Set("Content-Type", ct)
		}
		w.Header().Set("X-Echo-Url", r.URL.String())
		if v := r.Header.Get("X-Api-Key"); v != "" {
			w.Header().Set("X-Echo-Api-Key", v)
		}
		fmt.Fprintf(w, "%s\n", r.URL.String())
		for k, vs := range r.Header {
			fmt.Fprintf(w, "%s: %s\n", k, strings.Join(vs, ","))
		}
		_, _ = w.Write(body)
	})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return netip.MustParseAddrPort(ln.Addr().String())
}

// urlSafe matches secrets that can go into a header and a query string
// as they are.
var urlSafe = regexp.MustCompile(`^[A-Za-z0-9_.~-]{16,}$`)

// TestMaskNothingSlipsPast pushes corpus secrets through the real sidecar
// with curl (in request bodies, JSON and text, inline and as blobs, in
// headers and in URLs, echoed back in responses) and then searches the
// server's data directory (SQLite and the JetStream store) and the
// sidecar's spool byte by byte: no raw secret may be there.
func TestMaskNothingSlipsPast(t *testing.T) {
	dataDir := t.TempDir()
	srv, err := localserver.Start(t.Context(), localserver.Options{Binary: bin("chaperone-server"), DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	cl, err := client.New(srv.Addrs.HTTP)
	if err != nil {
		t.Fatal(err)
	}
	sb := newSandbox(t)
	up := startEchoUpstream(t, sb.HostIP())

	samples := corpus.Generate(42, 2)
	var secrets []string
	work := t.TempDir()
	// One big JSON body and one big text body: blobs. Small bodies: inline.
	var texts []string
	for _, s := range samples {
		if strings.HasPrefix(s.Rule, "pii-") {
			continue
		}
		secrets = append(secrets, s.Secret)
		texts = append(texts, s.Text)
	}
	big, _ := json.Marshal(map[string]any{"documents": texts})
	write := func(name string, data []byte) string {
		p := filepath.Join(work, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var script strings.Builder
	script.WriteString("set -eu\n")
	fmt.Fprintf(&script, "curl -sS --fail -o /dev/null -H 'Content-Type: application/json' --data-binary @%s \"http://$UP/echo\"\n", write("big.json", big))
	fmt.Fprintf(&script, "curl -sS --fail -o /dev/null -H 'Content-Type: text/plain' --data-binary @%s \"http://$UP/echo\"\n", write("big.txt", []byte(strings.Join(texts, "\n"))))
	n := 0
	for i, s := range samples {
		if !urlSafe.MatchString(s.Secret) || strings.HasPrefix(s.Rule, "pii-") || n >= 40 {
			continue
		}
		n++
		small := write(fmt.Sprintf("small%d.txt", i), []byte(s.Text))
		fmt.Fprintf(&script, "curl -sS --fail -o /dev/null -H 'X-Api-Key: %s' -H 'X-Debug: token=%s' --data-binary @%s \"http://$UP/echo?access_token=%s\"\n",
			s.Secret, s.Secret, small, s.Secret)
	}
	if n < 20 {
		t.Fatalf("only %d URL-safe samples", n)
	}

	// The sidecar runs as its own uid and must reach its spool, so it
	// lives outside t.TempDir's private tree.
	spoolParent, err := os.MkdirTemp("", "chaperone-e2e-mask-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			_ = os.RemoveAll(spoolParent)
		}
	})
	//nolint:gosec // searchable by the sidecar's uid
	if err := os.Chmod(spoolParent, 0o711); err != nil {
		t.Fatal(err)
	}
	spool := filepath.Join(spoolParent, "spool")
	var out, sidecarLog bytes.Buffer
	res, err := runner.Run(t.Context(), runner.Options{
		Command:     []string{"/bin/bash", "-c", script.String()},
		Env:         []string{"UP=" + up.String()},
		NATSURL:     srv.Addrs.NATS,
		Token:       srv.WorkloadToken,
		SidecarPath: bin("chaperone-sidecar"),
		User:        "e2e-mask",
		Sandbox:     sb,
		SpoolDir:    spool,
		Stdout:      &out,
		Stderr:      &out,
		SidecarLog:  &sidecarLog,
	})
	if err != nil {
		t.Fatalf("run: %v\noutput:\n%s\nsidecar:\n%s", err, out.String(), sidecarLog.String())
	}
	if res.ExitCode != 0 {
		t.Fatalf("script exited %d:\n%s\nsidecar:\n%s", res.ExitCode, out.String(), sidecarLog.String())
	}
	evs := waitEnded(t, cl, res.Session)
	verifyChain(t, cl, res.Session)
	masked, reqs := 0, 0
	for _, e := range evs {
		if len(e.Masked) > 0 {
			masked++
		}
		if e.Kind == event.KindHTTPRequest {
			reqs++
		}
	}
	if reqs != n+2 || masked < n {
		dumpEvents(t, evs)
		t.Fatalf("%d requests recorded (want %d), %d events with masking", reqs, n+2, masked)
	}
	// Stop the server so everything it holds is on disk.
	if err := srv.Stop(); err != nil {
		t.Logf("stop server: %v", err)
	}
	var files, bytesRead int
	for _, dir := range []string{dataDir, spool} {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			files++
			bytesRead += len(data)
			for _, sec := range secrets {
				for line := range strings.SplitSeq(sec, "\n") {
					if len(line) >= 8 && bytes.Contains(data, []byte(line)) {
						t.Errorf("%s holds a raw secret %.12s…", path, line)
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("searched %d files, %d bytes, for %d secrets; %d of %d events carried masking", files, bytesRead, len(secrets), masked, len(evs))
	if files == 0 {
		t.Fatal("nothing to search")
	}
}
