package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/api"
	"github.com/chaperone-dev/chaperone/pkg/asciicast"
	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/store/sqlite"
)

func TestSessionsExportAsciicast(t *testing.T) {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "cast.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var evs []*event.Event
	for i, sd := range []*event.StreamData{
		{Stream: "exec-1", Channel: "resize", Width: 90, Height: 20},
		{Stream: "exec-1", Channel: "stdout", Data: &event.Body{Size: 2, Recorded: 2, Text: "$ "}},
		{Stream: "exec-1", Channel: "stdin", Data: &event.Body{Size: 3, Recorded: 3, Text: "id\r"}},
		{Stream: "exec-2", Channel: "stdout", Data: &event.Body{Size: 5, Recorded: 5, Text: "other"}},
		{Stream: "exec-1", Channel: "stdout", Data: &event.Body{Size: 11, Recorded: 11, Text: "uid=0(root)"}},
	} {
		e := event.New("s-exec", event.KindStreamData, t0.Add(time.Duration(i)*250*time.Millisecond))
		e.Seq, e.StreamData = uint64(i+1), sd
		evs = append(evs, e)
	}
	if _, err := st.Append(t.Context(), evs); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(api.New(api.Options{Store: st, Version: "test"}))
	t.Cleanup(hs.Close)
	ts := &testServer{url: hs.URL}

	code, _, errs := run(t, ts, nil, "sessions", "export", "s-exec", "--format", "asciicast")
	if code != 1 || !strings.Contains(errs, "pick one with --stream: exec-1, exec-2") {
		t.Errorf("no --stream: exit %d: %s", code, errs)
	}
	code, _, errs = run(t, ts, nil, "sessions", "export", "s-exec", "--format", "asciicast", "--stream", "exec-9")
	if code != 1 || !strings.Contains(errs, `no stream "exec-9"`) {
		t.Errorf("unknown stream: exit %d: %s", code, errs)
	}
	code, out, errs := run(t, ts, nil, "sessions", "export", "s-exec", "--format", "asciicast", "--stream", "exec-1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	h, cast, err := asciicast.Read(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if h.Width != 90 || h.Height != 20 || len(cast) != 4 || cast[3] != (asciicast.Event{Time: 1, Code: "o", Data: "uid=0(root)"}) {
		t.Errorf("cast %+v %+v", h, cast)
	}
	// The CLI writes the same bytes the server's .cast route serves.
	resp, err := http.Get(hs.URL + "/api/v1/sessions/s-exec/streams/exec-1.cast")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	served, _ := io.ReadAll(resp.Body)
	if !bytes.Equal(served, []byte(out)) {
		t.Errorf("CLI export differs from the API's:\n%s\n%s", out, served)
	}
}
