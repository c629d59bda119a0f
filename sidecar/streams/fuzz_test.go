package streams

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

// wsFrame builds one RFC 6455 frame by hand; masked frames are what
// clients send.
func wsFrame(fin bool, op byte, payload []byte, masked bool) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	var mbit byte
	if masked {
		mbit = 0x80
	}
	out := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		out = append(out, mbit|byte(n))
	case n <= 0xFFFF:
		out = append(out, mbit|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, mbit|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	p := bytes.Clone(payload)
	if masked {
		key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
		out = append(out, key[:]...)
		for i := range p {
			p[i] ^= key[i%4]
		}
	}
	return append(out, p...)
}

// TestWebSocketTunnel decodes port-forward as SPDY frames carried in
// WebSocket binary messages, split at arbitrary points.
func TestWebSocketTunnel(t *testing.T) {
	var cl, sv []byte
	for _, st := range execSteps(t) {
		if st.fromClient {
			cl = append(cl, wsFrame(true, opBinary, st.b, true)...)
		} else {
			sv = append(sv, wsFrame(true, opBinary, st.b, false)...)
		}
	}
	var col collector
	d := NewWebSocket(ProtocolTunnelPortForward, col.emit, WithStream("t"))
	feedSplit(d.ClientBytes, cl, 3)
	feedSplit(d.ServerBytes, sv, 3)
	d.Close()
	got := col.transcript()
	want := []string{"t resize 80x24", "t resize 100x30", "t stdin whoami\r", "t stdout $ root\r\n", "t stderr warning\n", "t exit 0"}
	if !equalLines(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

// TestWebSocketControlInterleaved puts a ping between the fragments of a
// message, as RFC 6455 allows.
func TestWebSocketControlInterleaved(t *testing.T) {
	var b []byte
	b = append(b, wsFrame(false, opBinary, []byte{chStdin, 'a', 'b'}, true)...)
	b = append(b, wsFrame(true, opPing, []byte("hi"), true)...)
	b = append(b, wsFrame(false, opContinuation, []byte("cd"), true)...)
	b = append(b, wsFrame(true, opContinuation, nil, true)...)
	b = append(b, wsFrame(true, opClose, []byte{0x03, 0xe8}, true)...)
	var col collector
	d := NewWebSocket(ProtocolChannelV4, col.emit)
	feedSplit(d.ClientBytes, b, 1)
	if got, want := col.transcript(), []string{" stdin abcd"}; !equalLines(got, want) {
		t.Errorf("got %q want %q", got, want)
	}
}

// checkBounded fails if an event is larger than MaxChunk.
func checkBounded(t *testing.T) func(*event.StreamData) {
	return func(d *event.StreamData) {
		if d.Data != nil && d.Data.Size > MaxChunk {
			t.Fatalf("event of %d bytes", d.Data.Size)
		}
	}
}

func FuzzWebSocket(f *testing.F) {
	f.Add(ProtocolChannelV5, wsFrame(true, opBinary, []byte("\x01hello"), false), wsFrame(true, opBinary, []byte("\x00hi"), true), uint8(3))
	f.Add(ProtocolBase64, wsFrame(true, opText, []byte("1aGVsbG8="), false), wsFrame(true, opText, []byte("4eyJXaWR0aCI6MX0="), true), uint8(1))
	f.Add(ProtocolPortForward, wsFrame(true, opBinary, []byte("\x00\x90\x1f"), false), wsFrame(true, opBinary, []byte("\x00data"), true), uint8(2))
	f.Add(ProtocolChannelV4, wsFrame(true, opBinary, []byte(`\x03{"status":"Failure","details":{"causes":[{"reason":"ExitCode","message":"9"}]}}`), false), []byte{0x82, 0xFF, 0x7F, 0xFF}, uint8(5))
	f.Add(ProtocolTunnelPortForward, wsFrame(true, opBinary, []byte("\x80\x03\x00\x01\x00\x00\x00\x00"), false), []byte{}, uint8(4))
	f.Fuzz(func(t *testing.T, proto string, server, client []byte, split uint8) {
		d := NewWebSocket(proto, checkBounded(t))
		size := int(split) + 1
		feedSplit(d.ServerBytes, server, size)
		feedSplit(d.ClientBytes, client, size)
		d.Close()
		if d.client.nh > len(d.client.hdr) || cap(d.server.buf) > 2*MaxChunk || cap(d.client.buf) > 2*MaxChunk {
			t.Fatal("unbounded state")
		}
	})
}

func FuzzSPDY(f *testing.F) {
	var cl, sv []byte
	for _, st := range execSteps(f) {
		if st.fromClient {
			cl = append(cl, st.b...)
		} else {
			sv = append(sv, st.b...)
		}
	}
	f.Add(cl, sv, uint8(7))
	f.Add(cl[:len(cl)/2], sv[:10], uint8(0))
	f.Add([]byte("\x80\x03\x00\x01\x00\x00\x00\x0a\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00"), []byte("\x00\x00\x00\x01\x00\xff\xff\xff"), uint8(200))
	f.Fuzz(func(t *testing.T, client, server []byte, split uint8) {
		d := NewSPDY(checkBounded(t))
		size := int(split) + 1
		feedSplit(d.ClientBytes, client, size)
		feedSplit(d.ServerBytes, server, size)
		d.Close()
		for _, r := range []*spdyReader{d.spdy.client, d.spdy.server} {
			if cap(r.buf) > 2*maxControl || len(r.src.b) > 2*maxControl {
				t.Fatal("unbounded state")
			}
		}
	})
}

func BenchmarkWebSocketStdout(b *testing.B) {
	payload := append([]byte{chStdout}, bytes.Repeat([]byte("output line\n"), 300)...)
	frame := wsFrame(true, opBinary, payload, false)
	d := NewWebSocket(ProtocolChannelV5, func(*event.StreamData) {})
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		d.ServerBytes(frame)
	}
}

// TestConcurrentFeed feeds both directions from two goroutines, as the
// proxy's copy loops do.
func TestConcurrentFeed(t *testing.T) {
	steps := execSteps(t)
	var col collector
	d := NewSPDY(col.emit, WithStream("e"))
	// Streams are created by the client, so its frames go first here.
	var cl, sv []byte
	for _, st := range steps {
		if st.fromClient {
			cl = append(cl, st.b...)
		} else {
			sv = append(sv, st.b...)
		}
	}
	feedSplit(d.ClientBytes, cl[:len(cl)/2], 1<<20)
	done := make(chan struct{})
	go func() {
		defer close(done)
		feedSplit(d.ClientBytes, cl[len(cl)/2:], 7)
	}()
	feedSplit(d.ServerBytes, sv, 5)
	<-done
	d.Close()
	if len(col.transcript()) == 0 {
		t.Fatal("no events")
	}
}

// TestSlowGarbage feeds a resize stream that never completes, byte by byte:
// the cost must stay linear, so the test finishes quickly under -race.
func TestSlowGarbage(t *testing.T) {
	var col collector
	d := NewWebSocket(ProtocolChannelV4, col.emit)
	payload := append([]byte{chResize}, bytes.Repeat([]byte(`{"a":`), 1<<14)...)
	payload = append(payload, bytes.Repeat([]byte("}"), 1<<14)...)
	feedSplit(d.ClientBytes, wsFrame(false, opBinary, payload, true), 1)
	errPayload := append([]byte{chError}, bytes.Repeat([]byte(`[`), 1<<17)...)
	feedSplit(d.ServerBytes, wsFrame(true, opBinary, errPayload, false), 3)
	d.Close()
	for _, e := range col.evs {
		if e.Channel == ChannelExit && e.Data != nil && e.Data.Size > maxControl {
			t.Fatalf("status of %d bytes", e.Data.Size)
		}
	}
}
