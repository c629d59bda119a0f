package streams

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/moby/spdystream/spdy"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

// spdyPeer writes real SPDY/3.1 frames with moby/spdystream's framer (the
// one under kubectl's SPDY transport), each side with its own header
// compressor as on a real connection.
type spdyPeer struct {
	buf bytes.Buffer
	f   *spdy.Framer
}

func newSPDYPeer(t testing.TB) *spdyPeer {
	p := &spdyPeer{}
	f, err := spdy.NewFramer(&p.buf, bytes.NewReader(nil))
	if err != nil {
		t.Fatal(err)
	}
	p.f = f
	return p
}

// frame writes one frame and returns its bytes.
func (p *spdyPeer) frame(t testing.TB, fr spdy.Frame) []byte {
	t.Helper()
	p.buf.Reset()
	if err := p.f.WriteFrame(fr); err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(p.buf.Bytes())
}

type spdyStep struct {
	fromClient bool
	b          []byte
}

// execSteps is an exec session as kubectl and the API server run it.
func execSteps(t testing.TB) []spdyStep {
	c, s := newSPDYPeer(t), newSPDYPeer(t)
	var steps []spdyStep
	cl := func(fr spdy.Frame) { steps = append(steps, spdyStep{true, c.frame(t, fr)}) }
	sv := func(fr spdy.Frame) { steps = append(steps, spdyStep{false, s.frame(t, fr)}) }
	hdr := func(typ string) http.Header {
		return http.Header{"streamtype": {typ}, "x-kubernetes-pty": {"true"}}
	}
	for i, typ := range []string{"error", "stdin", "stdout", "stderr", "resize"} {
		id := spdy.StreamId(2*i + 1)
		cl(&spdy.SynStreamFrame{StreamId: id, Headers: hdr(typ)})
		sv(&spdy.SynReplyFrame{StreamId: id, Headers: http.Header{}})
	}
	cl(&spdy.SettingsFrame{FlagIdValues: []spdy.SettingsFlagIdValue{{Id: spdy.SettingsInitialWindowSize, Value: 1 << 20}}})
	cl(&spdy.DataFrame{StreamId: 9, Data: []byte(`{"Width":80,"Height":24}` + "\n" + `{"Width":100,`)})
	cl(&spdy.DataFrame{StreamId: 9, Data: []byte(`"Height":30}` + "\n")})
	sv(&spdy.DataFrame{StreamId: 5, Data: []byte("$ ")})
	cl(&spdy.DataFrame{StreamId: 3, Data: []byte("whoami\r")})
	sv(&spdy.PingFrame{Id: 2})
	sv(&spdy.DataFrame{StreamId: 5, Data: []byte("root\r\n")})
	sv(&spdy.DataFrame{StreamId: 7, Data: []byte("warning\n")})
	cl(&spdy.WindowUpdateFrame{StreamId: 5, DeltaWindowSize: 100})
	cl(&spdy.DataFrame{StreamId: 3, Flags: spdy.DataFlagFin})
	sv(&spdy.HeadersFrame{StreamId: 5, Headers: http.Header{"x-trailer": {"1"}}})
	sv(&spdy.DataFrame{StreamId: 1, Data: []byte(`{"metadata":{},"status":"Success"}`)})
	sv(&spdy.DataFrame{StreamId: 1, Flags: spdy.DataFlagFin})
	sv(&spdy.RstStreamFrame{StreamId: 5, Status: spdy.Cancel})
	sv(&spdy.GoAwayFrame{LastGoodStreamId: 9})
	return steps
}

func TestSPDYExec(t *testing.T) {
	want := []string{
		"e resize 80x24",
		"e resize 100x30",
		"e stdout $ ",
		"e stdin whoami\r",
		"e stdout root\r\n",
		"e stderr warning\n",
		"e exit 0",
	}
	for _, size := range []int{1, 5, 1 << 20} {
		var col collector
		d := NewSPDY(col.emit, WithStream("e"))
		for _, st := range execSteps(t) {
			f := d.ServerBytes
			if st.fromClient {
				f = d.ClientBytes
			}
			feedSplit(f, st.b, size)
		}
		d.Close()
		if got := col.transcript(); !equalLines(got, want) {
			t.Errorf("split %d:\n got %q\nwant %q", size, got, want)
		}
	}
}

func TestSPDYPortForward(t *testing.T) {
	c, s := newSPDYPeer(t), newSPDYPeer(t)
	var col collector
	d := NewSPDY(col.emit, WithStream("pf"))
	for i, typ := range []string{"error", "data"} {
		id := spdy.StreamId(2*i + 1)
		d.ClientBytes(c.frame(t, &spdy.SynStreamFrame{StreamId: id, Headers: http.Header{
			"streamtype": {typ}, "port": {"5432"}, "requestid": {"0"}}}))
		d.ServerBytes(s.frame(t, &spdy.SynReplyFrame{StreamId: id, Headers: http.Header{}}))
	}
	d.ClientBytes(c.frame(t, &spdy.DataFrame{StreamId: 3, Data: []byte("ping")}))
	d.ServerBytes(s.frame(t, &spdy.DataFrame{StreamId: 3, Data: []byte("pong")}))
	d.ServerBytes(s.frame(t, &spdy.DataFrame{StreamId: 1, Data: []byte("lost connection")}))
	d.Close()
	want := []string{"pf:5432 stdin ping", "pf:5432 stdout pong", "pf:5432 stderr lost connection"}
	if got := col.transcript(); !equalLines(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

// TestSPDYDictionary checks the hand-written dictionary against what the
// spec says about it: moby's framer compresses with its own copy, and zlib
// refuses a dictionary whose Adler-32 differs, so decoding one real header
// block proves the bytes are identical.
func TestSPDYDictionary(t *testing.T) {
	if len(spdyDictionary) != 1423 {
		t.Fatalf("dictionary is %d bytes, the spec's is 1423", len(spdyDictionary))
	}
	c := newSPDYPeer(t)
	b := c.frame(t, &spdy.SynStreamFrame{StreamId: 1, Headers: http.Header{"streamtype": {"stdout"}}})
	r := &spdyReader{c: newSPDY(NewSPDY(func(*event.StreamData) {}))}
	h := r.headers(b[18:])
	if r.broken || h["streamtype"] != "stdout" {
		t.Fatalf("headers %v broken %v", h, r.broken)
	}
}
