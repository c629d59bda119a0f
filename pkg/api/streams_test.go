package api

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/asciicast"
	"github.com/chaperone-dev/chaperone/pkg/event"
)

func TestStreamCast(t *testing.T) {
	f := newFixture(t, openSQLite(t))
	const dave = "s-dave"
	id := &event.Identity{User: "dave", Namespace: "team-a", Pod: "agent-4"}
	t0 := seedTime.Add(-time.Minute)
	big := []byte("a large recorded body\x00\x01")
	var evs []*event.Event
	add := func(d time.Duration, sd *event.StreamData) {
		evs = append(evs, ev(dave, event.KindStreamData, t0.Add(d), id, func(e *event.Event) { e.StreamData = sd }))
	}
	text := func(s string) *event.Body { return &event.Body{Size: int64(len(s)), Recorded: int64(len(s)), Text: s} }
	add(0, &event.StreamData{Stream: "exec-1", Channel: "resize", Width: 100, Height: 30})
	add(time.Second, &event.StreamData{Stream: "exec-1", Channel: "stdout", Data: text("$ ")})
	add(2*time.Second, &event.StreamData{Stream: "exec-1", Channel: "stdin", Data: text("ls\r")})
	add(3*time.Second, &event.StreamData{Stream: "exec-1", Channel: "stdout", Data: &event.Body{Size: int64(len(big)), Recorded: int64(len(big)), Ref: f.ref}})
	add(4*time.Second, &event.StreamData{Stream: "exec-2", Channel: "stdout", Data: text("other")})
	for i, e := range evs {
		e.Seq = uint64(i + 1)
	}
	if _, err := f.store.Append(t.Context(), evs); err != nil {
		t.Fatal(err)
	}

	resp := f.get(t, "/api/v1/sessions/"+dave+"/streams/exec-1.cast")
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != asciicast.ContentType {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	h, cast, err := asciicast.Read(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if h.Width != 100 || h.Height != 30 || h.Timestamp != t0.Unix() || h.Title != dave+"/exec-1" {
		t.Errorf("header %+v", h)
	}
	want := []asciicast.Event{
		{Time: 0, Code: "r", Data: "100x30"},
		{Time: 1, Code: "o", Data: "$ "},
		{Time: 2, Code: "i", Data: "ls\r"},
		{Time: 3, Code: "o", Data: string(big)},
	}
	if len(cast) != len(want) {
		t.Fatalf("events %+v, want %+v", cast, want)
	}
	for i := range want {
		if cast[i] != want[i] {
			t.Errorf("event %d: %+v, want %+v", i, cast[i], want[i])
		}
	}

	for path, code := range map[string]int{
		"/api/v1/sessions/" + dave + "/streams/exec-9.cast": http.StatusNotFound,
		"/api/v1/sessions/" + dave + "/streams/exec-1":      http.StatusNotFound,
		"/api/v1/sessions/s-nobody/streams/exec-1.cast":     http.StatusNotFound,
		"/api/v1/sessions/bad%20id/streams/exec-1.cast":     http.StatusBadRequest,
		"/api/v1/sessions/" + dave + "/streams/x.cast?z=1":  http.StatusBadRequest,
	} {
		resp := f.get(t, path)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != code || !strings.Contains(resp.Header.Get("Content-Type"), "json") {
			t.Errorf("%s: %d %s, want %d: %s", path, resp.StatusCode, resp.Header.Get("Content-Type"), code, b)
		}
	}
}
