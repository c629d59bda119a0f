package approvals

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"
)

// FuzzParseCallback feeds arbitrary bodies to the callback parser: it must
// never panic, and whatever it accepts has exactly one known action and a
// user.
func FuzzParseCallback(f *testing.F) {
	f.Add(payload("UANN", ActionApprove, "req-1", "1.1", "https://hooks.slack.test/x"))
	f.Add(payload("UANN", ActionDeny, "req-1", "", ""))
	f.Add([]byte("payload=%7B%7D"))
	f.Add([]byte("payload=" + url.QueryEscape(`{"type":"block_actions","user":{"id":"U"},"actions":[]}`)))
	f.Add([]byte("payload=" + url.QueryEscape(`{"type":"block_actions","user":{"id":"U"},"actions":[{"action_id":"approve","value":"x"}],"response_url":"file:///etc/passwd"}`)))
	f.Add([]byte("%zz"))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := parseCallback(body)
		if err != nil {
			return
		}
		if len(p.Actions) != 1 || p.User.ID == "" || p.Type != "block_actions" {
			t.Fatalf("accepted %+v", p)
		}
		if a := p.Actions[0].ActionID; a != ActionApprove && a != ActionDeny {
			t.Fatalf("accepted action %q", a)
		}
	})
}

// FuzzVerify checks that only the exact signature of the exact body passes.
func FuzzVerify(f *testing.F) {
	f.Add([]byte("payload=x"), "v0=00")
	f.Add([]byte(""), "")
	f.Fuzz(func(t *testing.T, body []byte, sig string) {
		c := &Callback{svc: &Service{now: time.Now}, secret: testSecret}
		ts := "1700000000"
		c.svc.now = func() time.Time { return time.Unix(1700000000, 0) }
		_, err := c.verify(ts, sig, body)
		if (err == nil) != (sig == Sign(testSecret, ts, body)) {
			t.Fatalf("verify(%q, %q) = %v", body, sig, err)
		}
	})
}

// TestRunExpires checks that Run itself denies an overdue approval.
func TestRunExpires(t *testing.T) {
	f := newFixture(t)
	f.svc.every = 10 * time.Millisecond
	f.run(t)
	req := testRequest("req-run-expire")
	res := f.ask(t, req)
	f.webhook.next(t)
	f.clock.Add(req.Timeout + time.Second)
	if d := wait(t, res); d.Decision != StateExpired {
		t.Fatalf("decision %+v", d)
	}
}

// TestAskWithoutServer checks the sidecar's side when no server answers:
// the request's timeout passing means expired, and a cancelled context is
// ErrNoAnswer.
func TestAskWithoutServer(t *testing.T) {
	f := newFixture(t)
	req := testRequest("req-alone")
	req.Timeout = 300 * time.Millisecond
	d, err := Ask(t.Context(), f.nc, req)
	if err != nil || d.Decision != StateExpired || d.Allowed() {
		t.Fatalf("decision %+v %v", d, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Ask(ctx, f.nc, req); !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("cancelled: %v", err)
	}
}
