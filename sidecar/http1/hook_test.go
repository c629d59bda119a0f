package http1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRequestHook checks the gated relay: a header swapped by the hook
// reaches the upstream (and only the swapped value), a refused request
// never reaches it and the client reads the refusal, and bodies and
// keep-alive still work.
func TestRequestHook(t *testing.T) {
	var mu sync.Mutex
	var seen []string // what the upstream received: "METHOD path auth body"
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization")+" "+string(body[:min(len(body), 10)]))
		mu.Unlock()
		_, _ = io.WriteString(w, "ok "+r.URL.Path)
	}))
	defer up.Close()

	hook := func(_ context.Context, stream uint64, req *http.Request) (Verdict, error) {
		switch {
		case strings.HasPrefix(req.URL.Path, "/deny"):
			return Verdict{Refusal: &Refusal{Status: http.StatusForbidden, ContentType: "application/json", Body: []byte(`{"reason":"no"}`)}}, nil
		case strings.HasPrefix(req.URL.Path, "/fail"):
			return Verdict{}, errors.New("broken")
		case req.Header.Get("Authorization") == "Bearer placeholder":
			req.Header.Set("Authorization", "Bearer real-token")
			return Verdict{Changed: []string{"Authorization"}, MetadataOnly: strings.HasPrefix(req.URL.Path, "/meta")}, nil
		}
		return Verdict{MetadataOnly: strings.HasPrefix(req.URL.Path, "/meta")}, nil
	}
	sink := &memSink{}
	rec := New(Options{RequestHook: hook})
	addr, stats := relayTo(t, rec, up.Listener.Addr().String(), sink)

	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	do := func(method, path, body string) (int, string) {
		req, _ := http.NewRequestWithContext(t.Context(), method, "http://"+addr+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer placeholder")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, got := do("POST", "/a", "body-a"); code != 200 || got != "ok /a" {
		t.Errorf("/a = %d %q", code, got)
	}
	if code, got := do("POST", "/meta", strings.Repeat("m", 5000)); code != 200 || got != "ok /meta" {
		t.Errorf("/meta = %d %q", code, got)
	}
	if code, got := do("DELETE", "/deny", "x"); code != 403 || got != `{"reason":"no"}` {
		t.Errorf("/deny = %d %q", code, got)
	}
	if code, _ := do("GET", "/fail", ""); code != http.StatusBadGateway {
		t.Errorf("/fail = %d, want 502", code)
	}
	tr.CloseIdleConnections()
	// Two connections: each refusal ends its connection.
	for range 2 {
		select {
		case <-stats:
		case <-time.After(10 * time.Second):
			t.Fatal("relay did not end")
		}
	}

	mu.Lock()
	defer mu.Unlock()
	want := []string{"POST /a Bearer real-token body-a", "POST /meta Bearer real-token " + strings.Repeat("m", 10)}
	if strings.Join(seen, "|") != strings.Join(want, "|") {
		t.Errorf("upstream saw %q, want %q", seen, want)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.reqs) != 4 || len(sink.resps) != 4 {
		t.Fatalf("recorded %d requests, %d responses, want 4 and 4", len(sink.reqs), len(sink.resps))
	}
	for _, r := range sink.reqs {
		if got := r.Headers["Authorization"]; len(got) != 1 || got[0] != Redacted {
			t.Errorf("%s recorded Authorization %q", r.URL, got)
		}
	}
	// The two connections' records interleave: find them by content.
	for _, r := range sink.reqs {
		if b := r.Body; r.URL == "/meta" && (b == nil || b.Size != 5000 || b.Recorded != 0 || b.Text != "") {
			t.Errorf("metadata-only request body = %+v", b)
		}
	}
	var metaResp, refusal bool
	for _, r := range sink.resps {
		if b := r.Body; r.Status == 200 && b != nil && b.Size == int64(len("ok /meta")) {
			metaResp = b.Recorded == 0 && b.Text == ""
		}
		if r.Status == 403 {
			refusal = r.Error != "" && r.Body != nil && r.Body.Text == `{"reason":"no"}`
		}
	}
	if !metaResp || !refusal {
		t.Errorf("metadata-only response kept no bytes: %v; refusal recorded with its body: %v", metaResp, refusal)
	}
}

// TestRequestHookPipelined sends two requests in one write: the second
// must wait for its own verdict, so a refused request cannot ride behind
// an allowed one.
func TestRequestHookPipelined(t *testing.T) {
	got := make(chan string, 4)
	upstream := scripted(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			got <- req.URL.Path
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	hook := func(_ context.Context, _ uint64, req *http.Request) (Verdict, error) {
		if req.URL.Path == "/evil" {
			return Verdict{Refusal: &Refusal{Status: http.StatusForbidden, Body: []byte("no")}}, nil
		}
		return Verdict{}, nil
	}
	addr, stats := relayTo(t, New(Options{RequestHook: hook}), upstream, &memSink{})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /evil HTTP/1.1\r\nHost: x\r\n\r\n")
	all, _ := io.ReadAll(c)
	if !strings.Contains(string(all), "200 OK") || !strings.Contains(string(all), "403 Forbidden") {
		t.Errorf("client read %q", all)
	}
	<-stats
	close(got)
	var paths []string
	for p := range got {
		paths = append(paths, p)
	}
	if strings.Join(paths, ",") != "/ok" {
		t.Errorf("upstream saw %v, want only /ok", paths)
	}
}

func TestRewriteHead(t *testing.T) {
	head := "GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer p\r\nX-Fold: a\r\n b\r\nAccept: */*\r\n\r\n"
	h := http.Header{"Authorization": {"Bearer real"}, "Accept": {"*/*"}}
	out, err := rewriteHead([]byte(head), h, []string{"Authorization", "X-Fold"})
	if err != nil {
		t.Fatal(err)
	}
	want := "GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nAuthorization: Bearer real\r\n\r\n"
	if string(out) != want {
		t.Errorf("rewriteHead = %q, want %q", out, want)
	}
	if _, err := rewriteHead([]byte(head), http.Header{"Authorization": {"a\r\nX: y"}}, []string{"Authorization"}); !errors.Is(err, errBadHeader) {
		t.Errorf("CRLF in a value: err = %v", err)
	}
}

// FuzzGatedRelay checks the gated relay's promise on any input: the
// upstream receives a prefix of what the client sent (nothing the parser
// did not consume and the hook did not allow), and nothing at all when the
// hook refuses every request. With reuse (the sidecar's default) the same
// holds unless the client asked to close, whose option is taken out.
func FuzzGatedRelay(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), false, false)
	f.Add([]byte("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /deny HTTP/1.1\r\n\r\n"), []byte("HTTP/1.1 204 No Content\r\n\r\n"), false, true)
	f.Add([]byte("POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n"), []byte("HTTP/1.1 200 OK\r\n\r\n"), true, false)
	f.Add([]byte("GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\nraw"), []byte("HTTP/1.1 101 S\r\n\r\nraw"), false, true)
	f.Add([]byte("POST / HTTP/1.1\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n"), []byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), false, true)
	f.Add([]byte("\x00\x01garbage"), []byte("HTTP/1.1 -1\r\n"), false, false)
	f.Fuzz(func(t *testing.T, client, server []byte, denyAll, reuse bool) {
		hook := func(_ context.Context, _ uint64, req *http.Request) (Verdict, error) {
			if denyAll || strings.Contains(req.URL.Path, "deny") {
				return Verdict{Refusal: &Refusal{Status: http.StatusForbidden}}, nil
			}
			return Verdict{}, nil
		}
		c := &deadlineConn{byteConn{r: bytes.NewReader(client)}}
		u := &deadlineConn{byteConn{r: bytes.NewReader(server)}}
		New(Options{BodyCap: 64, InlineLimit: 16, PairWait: time.Millisecond, MaxHeaderBytes: 4096, RequestHook: hook}).
			Relay(t.Context(), Pair{Client: c, Upstream: u, Reuse: reuse}, &memSink{})
		if denyAll && u.out.Len() > 0 {
			t.Fatalf("upstream got %q though every request was refused", u.out.Bytes())
		}
		if reuse && bytes.Contains(bytes.ToLower(client), []byte("close")) {
			return
		}
		if !bytes.HasPrefix(client, u.out.Bytes()) {
			t.Fatalf("upstream got %q, not a prefix of %q", u.out.Bytes(), client)
		}
	})
}

// FuzzRewriteHead rewrites the Authorization header of any request head
// that parses: the result parses too, with the new value and every other
// header as it was.
func FuzzRewriteHead(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer p\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.1\nHost: a\nX: 1\n y\nauthorization: x\n\n"))
	f.Add([]byte("PUT /x HTTP/1.0\r\nContent-Length: 0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, head []byte) {
		br := bufio.NewReader(bytes.NewReader(head))
		req, err := http.ReadRequest(br)
		if err != nil || br.Buffered() > 0 {
			return // the rewrite sees exactly one head, as the relay gives it
		}
		before := req.Header.Clone()
		req.Header.Set("Authorization", "Bearer real")
		out, err := rewriteHead(head, req.Header, []string{"Authorization"})
		if err != nil {
			t.Fatal(err)
		}
		got, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(out)))
		if err != nil {
			t.Fatalf("rewritten head %q does not parse: %v", out, err)
		}
		if v := got.Header.Values("Authorization"); len(v) != 1 || v[0] != "Bearer real" {
			t.Fatalf("rewritten Authorization %q in %q", v, out)
		}
		for k, vs := range before {
			if k == "Authorization" {
				continue
			}
			if strings.Join(got.Header[k], "|") != strings.Join(vs, "|") {
				t.Fatalf("header %s changed: %q → %q", k, vs, got.Header[k])
			}
		}
	})
}
