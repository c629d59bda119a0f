package api

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

type frame struct {
	event, id, data string
}

// readFrames parses a text/event-stream body into frames.
func readFrames(t *testing.T, r io.Reader) []frame {
	t.Helper()
	var out []frame
	var cur frame
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, event.MaxSize+64)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			out = append(out, cur)
			cur = frame{}
			continue
		}
		k, v, _ := strings.Cut(line, ": ")
		switch k {
		case "event":
			cur.event = v
		case "id":
			cur.id = v
		case "data":
			cur.data = v
		default:
			t.Fatalf("unexpected SSE line %q", line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read stream: %v", err)
	}
	return out
}

type sleeps struct {
	mu     sync.Mutex
	delays []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.delays = append(s.delays, d)
	s.mu.Unlock()
	return ctx.Err()
}

func TestReplayDelay(t *testing.T) {
	t0 := seedTime
	tests := []struct {
		gap   time.Duration
		speed float64
		want  time.Duration
	}{
		{time.Second, 1, time.Second},
		{time.Second, 2, 500 * time.Millisecond},
		{time.Second, 0.5, 2 * time.Second},
		{time.Hour, 1, MaxReplayGap},
		{time.Hour, 10, MaxReplayGap / 10},
		{time.Hour, 0.5, 2 * MaxReplayGap},
		{-time.Second, 1, 0},
		{0, 1, 0},
		{3 * time.Second, 1000, 3 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := replayDelay(t0, t0.Add(tt.gap), tt.speed); got != tt.want {
			t.Errorf("replayDelay(gap %v, speed %v) = %v, want %v", tt.gap, tt.speed, got, tt.want)
		}
	}
}

func TestReplay(t *testing.T) {
	f := newFixture(t, openSQLite(t))
	var sl sleeps
	f.srv.sleep = sl.sleep

	resp := f.get(t, "/api/v1/sessions/"+alice+"/replay?speed=2")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("replay: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	frames := readFrames(t, resp.Body)
	wantKinds := []string{"session.start", "conn.open", "http.request", "http.response", "k8s.request", "conn.close", ReplayEndEvent}
	var kinds, idsSeen []string
	for i, fr := range frames {
		kinds = append(kinds, fr.event)
		idsSeen = append(idsSeen, fr.id)
		if fr.event == ReplayEndEvent {
			if fr.data != `{"events":6}` {
				t.Errorf("end frame data %q", fr.data)
			}
			continue
		}
		e, err := event.Decode([]byte(fr.data))
		if err != nil {
			t.Fatalf("frame %d data: %v", i, err)
		}
		if string(e.Kind) != fr.event || e.Chain.Index != uint64(i+1) {
			t.Errorf("frame %d: event %q id %q carries %s #%d", i, fr.event, fr.id, e.Kind, e.Chain.Index)
		}
	}
	if !slices.Equal(kinds, wantKinds) {
		t.Errorf("kinds = %v, want %v", kinds, wantKinds)
	}
	if want := []string{"1", "2", "3", "4", "5", "6", ""}; !slices.Equal(idsSeen, want) {
		t.Errorf("ids = %v, want %v", idsSeen, want)
	}
	// aliceGaps halved, the 10s gap capped at MaxReplayGap/2.
	want := []time.Duration{50 * time.Millisecond, time.Second, MaxReplayGap / 2, 0, 125 * time.Millisecond}
	if !slices.Equal(sl.delays, want) {
		t.Errorf("delays = %v, want %v", sl.delays, want)
	}
}

func TestReplayResume(t *testing.T) {
	f := newFixture(t, openSQLite(t))
	var sl sleeps
	f.srv.sleep = sl.sleep
	frames := readFrames(t, f.get(t, "/api/v1/sessions/"+alice+"/replay", "Last-Event-ID", "3").Body)
	var got []string
	for _, fr := range frames {
		got = append(got, fr.id)
	}
	if want := []string{"4", "5", "6", ""}; !slices.Equal(got, want) {
		t.Errorf("resumed ids = %v, want %v", got, want)
	}
	if want := []time.Duration{0, 250 * time.Millisecond}; !slices.Equal(sl.delays, want) {
		t.Errorf("resumed delays = %v, want %v", sl.delays, want)
	}
	if fr := frames[len(frames)-1]; fr.data != `{"events":3}` {
		t.Errorf("end frame %q", fr.data)
	}
	// Resuming past the end sends just the end frame.
	frames = readFrames(t, f.get(t, "/api/v1/sessions/"+alice+"/replay", "Last-Event-ID", "6").Body)
	if len(frames) != 1 || frames[0].event != ReplayEndEvent {
		t.Errorf("resume at end: %+v", frames)
	}
}

// TestReplayFast runs the real sleep: at speed 1000 the fixture's 12 s of
// recorded gaps (7 s after capping) take milliseconds. The bound is generous.
func TestReplayFast(t *testing.T) {
	f := newFixture(t, openSQLite(t))
	start := time.Now()
	frames := readFrames(t, f.get(t, "/api/v1/sessions/"+alice+"/replay?speed=1000").Body)
	if len(frames) != 7 {
		t.Fatalf("got %d frames, want 7", len(frames))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("replay at speed 1000 took %v", d)
	}
}

func TestReplayBadParams(t *testing.T) {
	f := newFixture(t, openSQLite(t))
	for _, q := range []string{"speed=0", "speed=-1", "speed=1001", "speed=fast", "speed=NaN", "speed=Inf", "speed=1&speed=2"} {
		if e := decode[Error](t, f.get(t, "/api/v1/sessions/"+alice+"/replay?"+q), 400); e.Param != "speed" {
			t.Errorf("replay?%s = %+v, want param speed", q, e)
		}
	}
	if e := decode[Error](t, f.get(t, "/api/v1/sessions/"+alice+"/replay?after=1"), 400); e.Param != "after" {
		t.Errorf("unknown param: %+v", e)
	}
	for _, id := range []string{"x", "-1", "1.5"} {
		if e := decode[Error](t, f.get(t, "/api/v1/sessions/"+alice+"/replay", "Last-Event-ID", id), 400); e.Param != "Last-Event-ID" {
			t.Errorf("Last-Event-ID %q = %+v", id, e)
		}
	}
	decode[Error](t, f.get(t, "/api/v1/sessions/nope/replay"), 404)
}

// TestReplayStopsOnDisconnect checks the handler ends when the client goes
// away while it waits for the next event.
func TestReplayStopsOnDisconnect(t *testing.T) {
	f := newFixture(t, openSQLite(t))
	sleeping := make(chan struct{}, 10)
	var mu sync.Mutex
	calls := 0
	f.srv.sleep = func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		calls++
		mu.Unlock()
		sleeping <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}
	done := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(done)
		f.srv.ServeHTTP(w, r)
	})
	hs := newHTTPTest(t, h)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, hs.URL+"/api/v1/sessions/"+alice+"/replay", nil)
	resp, err := hs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "event: session.start\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	select {
	case <-sleeping:
	case <-t.Context().Done():
		t.Fatal("replay never waited")
	}
	cancel()
	select {
	case <-done:
	case <-t.Context().Done():
		t.Fatal("replay handler did not stop after the client left")
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 1 {
		t.Errorf("sleep called %d times, want 1", calls)
	}
}
