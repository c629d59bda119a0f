package http2

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

// streamText joins the recorded chunk texts of stream id.
func streamText(recs []rec, id string) string {
	var b strings.Builder
	for _, r := range recs {
		if r.data != nil && r.data.Stream == id && r.data.Data != nil {
			b.WriteString(r.data.Data.Text)
		}
	}
	return b.String()
}

func headersRecorded(recs []rec, stream uint64) bool {
	for _, r := range recs {
		if r.resp != nil && r.resp.Stream == stream && r.resp.Streamed == event.StreamedHeaders {
			return true
		}
	}
	return false
}

func TestServerSentEvents(t *testing.T) {
	modes(t, func(t *testing.T, useTLS bool) {
		next := make(chan struct{})
		h := newHarness(t, useTLS, Options{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = io.WriteString(w, "data: one\n\n")
			w.(http.Flusher).Flush()
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
			_, _ = io.WriteString(w, "data: two\n\n")
		}))
		resp, err := h.client.Do(newReq(t, t.Context(), "GET", h.base+"/v1/messages", nil))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		// The first event reaches the client while the upstream holds the
		// second back: nothing is buffered on the way.
		for _, want := range []string{"data: one\n", "\n"} {
			if line, err := br.ReadString('\n'); err != nil || line != want {
				t.Fatalf("first event: %q, %v", line, err)
			}
		}
		// And it is recorded while the stream is open.
		h.sink.waitFor(t, "the first chunk", func(recs []rec) bool {
			return headersRecorded(recs, 1) && streamText(recs, "1") == "data: one\n\n"
		})
		close(next)
		rest, err := io.ReadAll(br)
		if err != nil || string(rest) != "data: two\n\n" {
			t.Fatalf("rest: %q, %v", rest, err)
		}
		recs := h.sink.waitFor(t, "the end record", countFinal(1))
		end := finalResponses(recs)[1]
		if end.Streamed != event.StreamedEnd || end.Status != 200 || end.Body == nil || end.Body.Size != 22 || end.Body.Recorded != 22 || end.Body.Truncated {
			t.Fatalf("end record: %+v body %+v", end, end.Body)
		}
		if got := streamText(recs, "1"); got != "data: one\n\ndata: two\n\n" {
			t.Errorf("chunks: %q", got)
		}
		// Order: request, headers, chunks, end.
		kinds := ""
		for _, r := range recs {
			switch {
			case r.req != nil:
				kinds += "q"
			case r.resp != nil && r.resp.Streamed == event.StreamedHeaders:
				kinds += "h"
			case r.data != nil:
				kinds += "d"
			case r.resp != nil:
				kinds += "e"
			}
		}
		if kinds != "qhdde" {
			t.Errorf("record order %q, want qhdde", kinds)
		}
	})
}

func TestChunkSize(t *testing.T) {
	const chunk = 1024
	h := newHarness(t, false, Options{ChunkSize: chunk, StreamCap: 3000}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write(bytes.Repeat([]byte("x"), 5000))
	}))
	_, body := do(t, h, newReq(t, t.Context(), "GET", h.base+"/big", nil))
	if len(body) != 5000 {
		t.Fatalf("client got %d bytes", len(body))
	}
	recs := h.sink.waitFor(t, "the end record", countFinal(1))
	var sizes []int64
	var kept int64
	for _, r := range recs {
		if r.data != nil {
			sizes = append(sizes, r.data.Data.Size)
			kept += r.data.Data.Recorded
		}
	}
	if !slices.Equal(sizes, []int64{1024, 1024, 1024, 1024, 904}) || kept != 3000 {
		t.Errorf("chunk sizes %v, %d bytes kept", sizes, kept)
	}
	if b := finalResponses(recs)[1].Body; b.Size != 5000 || b.Recorded != 3000 || !b.Truncated {
		t.Errorf("end body %+v", b)
	}
}

func TestWatchCancelledByClient(t *testing.T) {
	upstreamGone := make(chan struct{})
	h := newHarness(t, false, Options{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"type":"ADDED","object":{}}`+"\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		close(upstreamGone)
	}))
	ctx, cancel := context.WithCancel(t.Context())
	resp, err := h.client.Do(newReq(t, ctx, "GET", h.base+"/api/v1/pods?watch=true", nil))
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || !strings.Contains(line, "ADDED") {
		t.Fatalf("first watch event: %q, %v", line, err)
	}
	h.sink.waitFor(t, "the watch event", func(recs []rec) bool {
		return headersRecorded(recs, 1) && strings.Contains(streamText(recs, "1"), "ADDED")
	})
	cancel()
	resp.Body.Close()
	<-upstreamGone // the upstream stream was cancelled too
	recs := h.sink.waitFor(t, "the end record", countFinal(1))
	end := finalResponses(recs)[1]
	if end.Streamed != event.StreamedEnd || !strings.Contains(end.Error, "cancelled") {
		t.Errorf("end record: %+v", end)
	}
}

// TestUnknownLengthThatLasts: a response without a known length that does
// not end within FlushInterval is recorded as a stream.
func TestUnknownLengthThatLasts(t *testing.T) {
	next := make(chan struct{})
	h := newHarness(t, false, Options{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "part one;")
		w.(http.Flusher).Flush()
		select {
		case <-next:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "part two")
	}))
	resp, err := h.client.Do(newReq(t, t.Context(), "GET", h.base+"/logs", nil))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	h.sink.waitFor(t, "the first part", func(recs []rec) bool {
		return headersRecorded(recs, 1) && streamText(recs, "1") == "part one;"
	})
	close(next)
	if b, _ := io.ReadAll(resp.Body); string(b) != "part one;part two" {
		t.Fatalf("client got %q", b)
	}
	recs := h.sink.waitFor(t, "the end record", countFinal(1))
	if got := streamText(recs, "1"); got != "part one;part two" {
		t.Errorf("chunks %q", got)
	}
}

func grpcFrame(msg []byte) []byte {
	b := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(b[1:], uint32(len(msg)))
	copy(b[5:], msg)
	return b
}

func TestGRPC(t *testing.T) {
	modes(t, func(t *testing.T, useTLS bool) {
		h := newHarness(t, useTLS, Options{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Content-Type") != "application/grpc" || r.Header.Get("Te") != "trailers" {
				w.WriteHeader(http.StatusUnsupportedMediaType)
				return
			}
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/grpc")
			w.Header().Set("Trailer", "Grpc-Status, Grpc-Message")
			_, _ = w.Write(grpcFrame([]byte("first")))
			_, _ = w.Write(grpcFrame([]byte("second!")))
			w.Header().Set("Grpc-Status", "5")
			w.Header().Set("Grpc-Message", "item%20not%20found")
		}))
		req := newReq(t, t.Context(), "POST", h.base+"/shop.v1.Items/Get", bytes.NewReader(grpcFrame([]byte("abc"))))
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Te", "trailers")
		resp, body := do(t, h, req)
		if resp.StatusCode != 200 || len(body) != 5+5+5+7 {
			t.Fatalf("grpc call: %d, %d bytes", resp.StatusCode, len(body))
		}
		if resp.Trailer.Get("Grpc-Status") != "5" || resp.Trailer.Get("Grpc-Message") != "item%20not%20found" {
			t.Fatalf("client trailers: %v", resp.Trailer)
		}
		recs := h.sink.waitFor(t, "the call", countFinal(1))
		rq, rs := requests(recs)[1], finalResponses(recs)[1]
		if g := rq.GRPC; g == nil || g.Service != "shop.v1.Items" || g.Method != "Get" || g.Messages != 1 || !slices.Equal(g.Sizes, []int64{3}) {
			t.Errorf("request grpc: %+v", rq.GRPC)
		}
		if b := rq.Body; b == nil || b.Size != 8 || b.Recorded != 0 || b.Text != "" || b.B64 != nil {
			t.Errorf("request body: %+v (messages must not be recorded)", b)
		}
		g := rs.GRPC
		if g == nil || g.Status == nil || *g.Status != 5 || g.Message != "item not found" || g.Messages != 2 || !slices.Equal(g.Sizes, []int64{5, 7}) {
			t.Errorf("response grpc: %+v", g)
		}
		if v := rs.Trailers["Grpc-Status"]; len(v) != 1 || v[0] != "5" {
			t.Errorf("trailers: %v", rs.Trailers)
		}
		if b := rs.Body; b == nil || b.Size != 22 || b.Recorded != 0 {
			t.Errorf("response body: %+v", b)
		}
	})
}

func TestGRPCFrames(t *testing.T) {
	stream := slices.Concat(grpcFrame(nil), grpcFrame([]byte("hello")), grpcFrame(bytes.Repeat([]byte{1}, 300)))
	for split := range len(stream) + 1 {
		var g grpcFrames
		g.feed(stream[:split])
		g.feed(stream[split:])
		if g.count != 3 || !slices.Equal(g.sizes, []int64{0, 5, 300}) || g.left != 0 || g.nhdr != 0 {
			t.Fatalf("split at %d: %d messages, sizes %v", split, g.count, g.sizes)
		}
	}
}

func TestGRPCCall(t *testing.T) {
	for _, tc := range []struct{ path, svc, method string }{
		{"/pkg.Svc/Do", "pkg.Svc", "Do"},
		{"/Svc/Do", "Svc", "Do"},
		{"/", "", ""},
		{"/a/b/c", "", ""},
		{"/Svc/", "", ""},
	} {
		if g := grpcCall(tc.path); g.Service != tc.svc || g.Method != tc.method {
			t.Errorf("%q: %+v", tc.path, g)
		}
	}
}
