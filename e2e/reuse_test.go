package e2e

import (
	"strings"
	"testing"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

// TestUpstreamReuse runs real curl, a new process and connection per
// request, through the real sidecar to an intercepted HTTPS upstream: the
// sidecar keeps the upstream connection, so the upstream sees one
// connection (one TLS handshake) for all of them, the client asking to
// close is answered with a close, and every client connection is still
// recorded on its own. With --upstream-idle 0 each curl gets its own.
func TestUpstreamReuse(t *testing.T) {
	srv, cl := startServer(t)
	sb := newSandbox(t)
	script := `set -u
for i in 1 2 3; do
  curl -sS --fail --resolve "upstream.test:$PORT:$IP" "https://upstream.test:$PORT/hello?name=r$i"; echo " [rc=$?]"
done
curl -sS --fail -D - -H 'Connection: close' --resolve "upstream.test:$PORT:$IP" "https://upstream.test:$PORT/hello?name=close" | tr -d '\r'; echo " [rc=$?]"
exit 0
`
	for _, tc := range []struct {
		name      string
		args      []string
		wantConns int32
	}{
		{"kept", nil, 1},
		{"off", []string{"--upstream-idle", "0"}, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := startTLSUpstream(t, sb.HostIP())
			out, session := runTLS(t, srv, sb, up, []string{up.caFile}, script, tc.args...)
			for _, want := range []string{"hello r1 over HTTP/1.1 [rc=0]", "hello r3 over HTTP/1.1 [rc=0]", "hello close over HTTP/1.1 [rc=0]"} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			if !strings.Contains(strings.ToLower(out), "connection: close") {
				t.Errorf("the close request was not answered with a close:\n%s", out)
			}
			if n := up.conns.Load(); n != tc.wantConns {
				t.Errorf("upstream accepted %d connections, want %d", n, tc.wantConns)
			}
			evs := waitEnded(t, cl, session)
			verifyChain(t, cl, session)
			var opens, closes, reqs, resps int
			for _, e := range evs {
				switch e.Kind {
				case event.KindConnOpen:
					if e.ConnOpen.TLS != nil && e.ConnOpen.TLS.Intercepted && e.ConnOpen.TLS.Version != "" {
						opens++
					}
				case event.KindConnClose:
					if e.ConnClose.Error != "" {
						t.Errorf("conn.close error %q", e.ConnClose.Error)
					}
					closes++
				case event.KindHTTPRequest:
					reqs++
				case event.KindHTTPResponse:
					if e.HTTPResponse.Status == 200 {
						resps++
					}
				}
			}
			if opens != 4 || closes != 4 || reqs != 4 || resps != 4 {
				dumpEvents(t, evs)
				t.Errorf("recorded %d intercepted conn.open, %d conn.close, %d requests, %d responses; want 4 each", opens, closes, reqs, resps)
			}
		})
	}
}
