package http2

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/sidecar/http1"
)

// echo answers /echo with the request body and anything else with its
// path and query.
func echo() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/echo" {
			w.Header().Set("Content-Type", "application/octet-stream")
			_, _ = io.Copy(w, r.Body)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", fmt.Sprint(len(r.URL.RequestURI())))
		_, _ = io.WriteString(w, r.URL.RequestURI())
	})
}

func do(t testing.TB, h *harness, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func newReq(t testing.TB, ctx context.Context, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestGetAndPost(t *testing.T) {
	modes(t, func(t *testing.T, useTLS bool) {
		h := newHarness(t, useTLS, Options{}, echo())
		resp, body := do(t, h, newReq(t, t.Context(), "GET", h.base+"/hello?x=1", nil))
		if resp.StatusCode != 200 || string(body) != "/hello?x=1" || resp.ProtoMajor != 2 {
			t.Fatalf("GET: %d %q %s", resp.StatusCode, body, resp.Proto)
		}
		resp, body = do(t, h, newReq(t, t.Context(), "POST", h.base+"/echo", strings.NewReader("ping")))
		if resp.StatusCode != 200 || string(body) != "ping" {
			t.Fatalf("POST: %d %q", resp.StatusCode, body)
		}
		recs := h.sink.waitFor(t, "two exchanges", countFinal(2))
		reqs, resps := requests(recs), finalResponses(recs)
		get, post := reqs[1], reqs[3]
		if get == nil || post == nil {
			t.Fatalf("want requests on streams 1 and 3: %s", dump(recs))
		}
		if get.Proto != "HTTP/2.0" || get.Method != "GET" || get.URL != h.base+"/hello?x=1" || get.Body != nil {
			t.Errorf("GET record: %+v", get)
		}
		if post.Method != "POST" || post.Body == nil || post.Body.Text != "ping" || post.Body.Size != 4 || post.Body.Truncated {
			t.Errorf("POST record: %+v body %+v", post, post.Body)
		}
		if r := resps[1]; r == nil || r.Status != 200 || r.Body == nil || r.Body.Text != "/hello?x=1" || r.Duration <= 0 || r.Streamed != "" {
			t.Errorf("GET response record: %+v", r)
		}
		if r := resps[3]; r == nil || r.Body == nil || r.Body.Text != "ping" || r.Headers["Content-Type"][0] != "application/octet-stream" {
			t.Errorf("POST response record: %+v", r)
		}
		// Each request precedes its response.
		seen := map[uint64]bool{}
		for _, r := range recs {
			switch {
			case r.req != nil:
				seen[r.req.Stream] = true
			case r.resp != nil && !seen[r.resp.Stream]:
				t.Errorf("response of stream %d before its request", r.resp.Stream)
			}
		}
	})
}

func TestConcurrentStreams(t *testing.T) {
	modes(t, func(t *testing.T, useTLS bool) {
		h := newHarness(t, useTLS, Options{}, echo())
		// One request first, so that the pool holds one connection.
		do(t, h, newReq(t, t.Context(), "GET", h.base+"/warm", nil))
		const n = 64
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Go(func() {
				path := fmt.Sprintf("/item/%d", i)
				resp, err := h.client.Do(newReq(t, t.Context(), "GET", h.base+path, nil))
				if err != nil {
					errs <- err
					return
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				if string(b) != path {
					errs <- fmt.Errorf("%s answered %q", path, b)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		recs := h.sink.waitFor(t, "all exchanges", countFinal(n+1))
		if c := h.conns.Load(); c != 1 {
			t.Errorf("recorder saw %d client connections, want 1", c)
		}
		reqs, resps := requests(recs), finalResponses(recs)
		if len(reqs) != n+1 || len(resps) != n+1 {
			t.Fatalf("%d requests, %d responses recorded", len(reqs), len(resps))
		}
		for id, req := range reqs {
			resp := resps[id]
			if id%2 != 1 || resp == nil || resp.Body == nil || !strings.HasSuffix(req.URL, resp.Body.Text) {
				t.Errorf("stream %d: request %s paired with %+v", id, req.URL, resp)
			}
		}
	})
}

func TestLargeBodyOverCap(t *testing.T) {
	const bodyCap = 64 << 10
	h := newHarness(t, false, Options{BodyCap: bodyCap}, echo())
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	resp, body := do(t, h, newReq(t, t.Context(), "POST", h.base+"/echo", bytes.NewReader(big)))
	if resp.StatusCode != 200 || !bytes.Equal(body, big) {
		t.Fatalf("echo: %d, %d bytes back", resp.StatusCode, len(body))
	}
	recs := h.sink.waitFor(t, "the exchange", countFinal(1))
	for name, b := range map[string]*event.Body{"request": requests(recs)[1].Body, "response": finalResponses(recs)[1].Body} {
		if b == nil || b.Size != int64(len(big)) || b.Recorded != bodyCap || !b.Truncated || b.Ref == "" || b.Text != "" {
			t.Fatalf("%s body: %+v", name, b)
		}
		if data := h.sink.blob(b.Ref); !bytes.Equal(data, big[:bodyCap]) || http1.BlobRef(data) != b.Ref {
			t.Errorf("%s blob: %d bytes", name, len(data))
		}
	}
}

func TestRedaction(t *testing.T) {
	var got atomic.Value
	h := newHarness(t, false, Options{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.Header.Get("Authorization") + "|" + r.Header.Get("Cookie"))
		w.Header().Set("Set-Cookie", "session=s3cret")
		w.Header().Set("X-Kept", "yes")
	}))
	req := newReq(t, t.Context(), "GET", h.base+"/me", nil)
	req.Header.Set("Authorization", "Bearer t0ken")
	req.Header.Set("Proxy-Authorization", "Basic eA==")
	req.Header.Set("Cookie", "a=b")
	req.Header.Set("Accept", "text/plain")
	do(t, h, req)
	if g := got.Load(); g != "Bearer t0ken|a=b" {
		t.Fatalf("upstream got %q", g)
	}
	recs := h.sink.waitFor(t, "the exchange", countFinal(1))
	rq, rs := requests(recs)[1], finalResponses(recs)[1]
	for _, k := range []string{"Authorization", "Proxy-Authorization", "Cookie"} {
		if v := rq.Headers[k]; len(v) != 1 || v[0] != http1.Redacted {
			t.Errorf("request %s recorded as %q", k, v)
		}
	}
	if v := rq.Headers["Accept"]; len(v) != 1 || v[0] != "text/plain" {
		t.Errorf("Accept recorded as %q", v)
	}
	if v := rs.Headers["Set-Cookie"]; len(v) != 1 || v[0] != http1.Redacted {
		t.Errorf("Set-Cookie recorded as %q", v)
	}
	if v := rs.Headers["X-Kept"]; len(v) != 1 || v[0] != "yes" {
		t.Errorf("X-Kept recorded as %q", v)
	}
}

func TestRequestHook(t *testing.T) {
	var hits atomic.Int64
	var auth atomic.Value
	upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		auth.Store(r.Header.Get("Authorization"))
	})
	hook := func(_ context.Context, _ uint64, req *http.Request) (Verdict, error) {
		switch req.URL.Path {
		case "/deny":
			return Verdict{Refusal: &Refusal{Status: http.StatusForbidden, ContentType: "text/plain", Body: []byte("denied by policy")}}, nil
		case "/broken":
			return Verdict{}, errors.New("no credential")
		}
		if req.Header.Get("Authorization") == "Bearer placeholder" {
			req.Header.Set("Authorization", "Bearer real-token")
		}
		return Verdict{}, nil
	}
	h := newHarness(t, false, Options{RequestHook: hook}, upstream)

	req := newReq(t, t.Context(), "GET", h.base+"/ok", nil)
	req.Header.Set("Authorization", "Bearer placeholder")
	if resp, _ := do(t, h, req); resp.StatusCode != 200 || auth.Load() != "Bearer real-token" {
		t.Fatalf("rewrite: %d, upstream saw %q", resp.StatusCode, auth.Load())
	}
	resp, body := do(t, h, newReq(t, t.Context(), "POST", h.base+"/deny", strings.NewReader("x")))
	if resp.StatusCode != 403 || string(body) != "denied by policy" || resp.Header.Get("Content-Type") != "text/plain" {
		t.Fatalf("refusal: %d %q", resp.StatusCode, body)
	}
	resp, _ = do(t, h, newReq(t, t.Context(), "GET", h.base+"/broken", nil))
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("hook error: %d", resp.StatusCode)
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("upstream hit %d times, want 1", n)
	}
	recs := h.sink.waitFor(t, "three exchanges", countFinal(3))
	reqs, resps := requests(recs), finalResponses(recs)
	if v := reqs[1].Headers["Authorization"]; len(v) != 1 || v[0] != http1.Redacted {
		t.Errorf("rewritten Authorization recorded as %q", v)
	}
	if r := resps[3]; r.Status != 403 || r.Error == "" || r.Body == nil || r.Body.Text != "denied by policy" {
		t.Errorf("refusal record: %+v", r)
	}
	if r := resps[5]; r.Status != 502 || !strings.Contains(r.Error, "no credential") {
		t.Errorf("hook error record: %+v", r)
	}
}

func TestUpstreamStreamError(t *testing.T) {
	h := newHarness(t, false, Options{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/reset" {
			panic(http.ErrAbortHandler) // resets the stream before any header
		}
		_, _ = io.WriteString(w, "fine")
	}))
	resp, body := do(t, h, newReq(t, t.Context(), "GET", h.base+"/reset", nil))
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "upstream") {
		t.Fatalf("reset stream: %d %q", resp.StatusCode, body)
	}
	// The connection survives a failed stream.
	if resp, body = do(t, h, newReq(t, t.Context(), "GET", h.base+"/next", nil)); string(body) != "fine" {
		t.Fatalf("next: %d %q", resp.StatusCode, body)
	}
	recs := h.sink.waitFor(t, "two exchanges", countFinal(2))
	if r := finalResponses(recs)[1]; r.Status != 502 || !strings.HasPrefix(r.Error, "upstream") {
		t.Errorf("record: %+v", r)
	}
	if c := h.conns.Load(); c != 1 {
		t.Errorf("%d client connections, want 1", c)
	}
}

func TestUpstreamConnectionLost(t *testing.T) {
	h := newHarness(t, false, Options{}, echo())
	do(t, h, newReq(t, t.Context(), "GET", h.base+"/first", nil))
	h.closeUpstreams()
	st := <-h.stats
	if !errors.Is(st.Err, ErrUpstream) {
		t.Fatalf("Stats.Err = %v, want ErrUpstream", st.Err)
	}
	if st.Requests != 1 || st.Responses != 1 || st.BytesUp == 0 || st.BytesDown == 0 {
		t.Errorf("stats: %+v", st)
	}
	// The client's connection was ended: its next request needs a new one.
	do(t, h, newReq(t, t.Context(), "GET", h.base+"/second", nil))
	if c := h.conns.Load(); c != 2 {
		t.Errorf("%d client connections, want 2", c)
	}
}
