package http1

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

// slowSink records responses slowly and tracks how far the relay got
// ahead of the recording.
type slowSink struct {
	memSink
	delay   time.Duration
	mu      sync.Mutex
	relayed int // requests recorded (they are recorded as they are relayed)
	maxLead int // most requests recorded ahead of their responses
}

func (s *slowSink) Request(ctx context.Context, t time.Time, r *event.HTTPRequest) error {
	s.mu.Lock()
	s.relayed++
	s.maxLead = max(s.maxLead, s.relayed-len(s.resps))
	s.mu.Unlock()
	return s.memSink.Request(ctx, t, r)
}

func (s *slowSink) Response(ctx context.Context, t time.Time, r *event.HTTPResponse) error {
	time.Sleep(s.delay)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.memSink.Response(ctx, t, r)
}

// TestRecordingBacklogBounded: when recording is slower than the relay,
// the relay waits rather than let unrecorded exchanges pile up.
func TestRecordingBacklogBounded(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	defer up.Close()
	sink := &slowSink{delay: 20 * time.Millisecond}
	addr, stats := relayTo(t, New(Options{}), up.Listener.Addr().String(), sink)
	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	const n = 3 * maxUnrecorded
	for range n {
		resp, err := client.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	tr.CloseIdleConnections()
	st := <-stats
	if st.Requests != n || st.Responses != n {
		t.Fatalf("recorded %d requests and %d responses, want %d", st.Requests, st.Responses, n)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if sink.maxLead > maxUnrecorded+1 {
		t.Fatalf("relay got %d requests ahead of the recording, bound is %d", sink.maxLead, maxUnrecorded+1)
	}
	for i, r := range sink.resps {
		if r.Stream != uint64(i+1) {
			t.Fatalf("response %d recorded as stream %d: order lost", i, r.Stream)
		}
	}
}
