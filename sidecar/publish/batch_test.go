package publish

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/sidecar/spool"
)

// TestFlightBatches covers the window with messages of several records:
// an acknowledgement returns all of a message's positions, answers may
// come in any order, and an ended epoch's answers are ignored.
func TestFlightBatches(t *testing.T) {
	f := newFlight(4)
	f.reset(10)
	pos := spoolPositions(t, 6)
	f.add(pos[0:1], 100, time.Now()) // id 10
	f.add(pos[1:4], 300, time.Now()) // id 11
	f.add(pos[4:6], 200, time.Now()) // id 12
	if n, b, _, _ := f.settle(); n != 3 || b != 600 {
		t.Fatalf("window %d messages, %d bytes; want 3, 600", n, b)
	}
	got, ok := f.answer(11, nil, nil)
	if !ok || !equalPos(got, pos[1:4]) {
		t.Fatalf("ack of the batch gave %v %v, want %v", got, ok, pos[1:4])
	}
	if _, ok := f.answer(11, nil, nil); ok {
		t.Fatal("a repeated ack counted twice")
	}
	if n, _, _, _ := f.settle(); n != 3 {
		t.Fatalf("window %d after acking the middle message, want 3", n)
	}
	if got, ok := f.answer(10, nil, got[:0]); !ok || !equalPos(got, pos[0:1]) {
		t.Fatalf("ack of the first message gave %v %v", got, ok)
	}
	if n, b, _, _ := f.settle(); n != 1 || b != 200 {
		t.Fatalf("window %d messages, %d bytes after two acks; want 1, 200", n, b)
	}
	f.reset(13)
	if _, ok := f.answer(12, nil, nil); ok {
		t.Fatal("an ended epoch's ack was taken")
	}
	f.add(pos[4:6], 200, time.Now()) // id 13, the resend
	if got, ok := f.answer(13, nil, nil); !ok || !equalPos(got, pos[4:6]) {
		t.Fatalf("ack of the resent batch gave %v %v", got, ok)
	}
	if _, ok := f.answer(14, errors.New("refused"), nil); ok {
		t.Fatal("an unknown id was taken")
	}
}

// TestFlightPositionsReused sends many batches through a small window:
// the positions stay right while the buffer is compacted and reused.
func TestFlightPositionsReused(t *testing.T) {
	f := newFlight(8)
	pos := spoolPositions(t, 5000)
	next := 0
	var id uint64
	for next < len(pos) {
		n := min(1+next%7, len(pos)-next)
		f.add(pos[next:next+n], n, time.Now())
		got, ok := f.answer(id, nil, nil)
		if !ok || !equalPos(got, pos[next:next+n]) {
			t.Fatalf("message %d: %v %v, want %v", id, got, ok, pos[next:next+n])
		}
		if c, _, _, _ := f.settle(); c != 0 {
			t.Fatalf("message %d: %d left in the window", id, c)
		}
		next += n
		id++
	}
}

// spoolPositions appends n records to a fresh spool and returns their
// positions.
func spoolPositions(t *testing.T, n int) []spool.Pos {
	t.Helper()
	sp, err := spool.Open(t.TempDir(), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sp.Close() })
	out := make([]spool.Pos, n)
	for i := range out {
		if out[i], err = sp.Append(spool.Message{Subject: "s", MsgID: fmt.Sprint(i), Data: []byte("{}")}); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func equalPos(a, b []spool.Pos) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestBatchesKeepOrder spools events and blobs while NATS is away, so the
// sender finds a backlog: events go in batches within the caps, a blob
// ends a batch and goes alone, the stream keeps the spool's order, and
// each batch's acknowledgement acknowledges all its records.
func TestBatchesKeepOrder(t *testing.T) {
	ns := startNATS(t)
	ns.stop()
	reg := prometheus.NewRegistry()
	const maxEvents, maxBytes = 10, 4 << 10
	p := newPublisher(t, ns.url, t.TempDir(), func(o *Options) {
		o.MaxBatchEvents, o.MaxBatchBytes, o.Registerer = maxEvents, maxBytes, reg
	})
	ctx := t.Context()
	var want []string
	records := 0
	for i := range 300 {
		if i%37 == 5 {
			data := []byte(strings.Repeat(fmt.Sprintf("blob %d ", i), 50))
			sum := sha256.Sum256(data)
			ref := "sha256:" + hex.EncodeToString(sum[:])
			if err := p.PublishBlob(ctx, ref, data); err != nil {
				t.Fatal(err)
			}
			want = append(want, ref)
			records++
		}
		e := newEvent(i, i%5*300) // 0 to 1200 bytes of padding: the byte cap binds too
		if err := p.Publish(ctx, e); err != nil {
			t.Fatal(err)
		}
		want = append(want, e.ID)
		records++
	}
	ns.start()
	waitDrained(t, p, 30*time.Second)

	got := ns.readStream(ctx)
	if len(got) != len(want) {
		t.Fatalf("stream holds %d records, want %d", len(got), len(want))
	}
	batches := 0
	for i, m := range got {
		if m.msgID != want[i] {
			t.Fatalf("record %d is %s, want %s", i, m.msgID, want[i])
		}
		if m.blobRef != "" {
			continue
		}
		if m.batch > maxEvents {
			t.Fatalf("a message carries %d events, over the cap %d", m.batch, maxEvents)
		}
		if m.first && m.batch > 1 {
			batches++
			size := 0
			for _, e := range got[i : i+m.batch] {
				size += len(e.data) + 1
			}
			if size > maxBytes {
				t.Fatalf("a batch of %d events holds %d bytes, over the cap %d", m.batch, size, maxBytes)
			}
		}
	}
	if batches == 0 {
		t.Fatal("no batch sent from a spooled backlog")
	}
	if v := testutil.ToFloat64(p.m.acked); v != float64(records) {
		t.Fatalf("acked_total %v, want %d records", v, records)
	}
	if c := testutil.CollectAndCount(reg, "chaperone_sidecar_publish_message_events"); c != 1 {
		t.Fatalf("events-per-message histogram: %d series", c)
	}
}

// TestBatchResentAfterEpochEnd takes NATS away while batches of a backlog
// are in flight, some stored and not yet acknowledged: their records are
// sent again, grouped anew with what was spooled meanwhile, and the
// stream ends with every event, copies only of the same event (JetStream's
// window or the store drops them), and the spool empty.
func TestBatchResentAfterEpochEnd(t *testing.T) {
	ns := startNATS(t)
	ns.stop()
	p := newPublisher(t, ns.url, t.TempDir(), func(o *Options) { o.MaxBatchEvents = 16 })
	ctx := t.Context()
	const n, more = 20000, 100
	published := 0
	publish := func(count int) {
		for range count {
			if err := p.Publish(ctx, newEvent(published, 300)); err != nil {
				t.Fatal(err)
			}
			published++
		}
	}
	// NATS may go away at a moment nothing is in flight; then again.
	for round := 0; round < 3 && testutil.ToFloat64(p.m.resent) == 0; round++ {
		publish(n)
		acked := testutil.ToFloat64(p.m.acked)
		ns.start()
		waitFor(t, "a quarter acknowledged", func() bool { return testutil.ToFloat64(p.m.acked) >= acked+n/4 })
		ns.stop()
		publish(more)
		ns.start()
		waitDrained(t, p, 30*time.Second)
		ns.stop()
	}
	ns.start()
	if testutil.ToFloat64(p.m.resent) == 0 {
		t.Fatal("nothing resent after NATS went away with messages in flight")
	}
	got := ns.readStream(ctx)
	seqs := map[uint64]bool{}
	for _, m := range got {
		seqs[m.seq] = true
	}
	if d := distinct(t, got); d != published || len(seqs) != published {
		t.Fatalf("stream holds %d events, %d distinct, %d sequences; want %d", len(got), d, len(seqs), published)
	}
	t.Logf("%d events stored for %d published, %v records resent", len(got), published, testutil.ToFloat64(p.m.resent))
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// TestBatchMaxPayload runs against a server with a small max payload: a
// batch stays under half of it, an event over that half goes alone, and
// one over the max payload itself is dropped without its neighbours.
func TestBatchMaxPayload(t *testing.T) {
	const maxPayload = 16 << 10
	ns := startNATSWith(t, maxPayload)
	ns.stop()
	p := newPublisher(t, ns.url, t.TempDir(), nil)
	ctx := t.Context()
	var want []string
	var tooLarge string
	for i := range 60 {
		pad := 1500
		switch i {
		case 20:
			pad = maxPayload/2 + 100 // alone, under the max payload
		case 40:
			pad = maxPayload + 100 // never deliverable
		}
		e := newEvent(i, pad)
		if err := p.Publish(ctx, e); err != nil {
			t.Fatal(err)
		}
		if i == 40 {
			tooLarge = e.ID
			continue
		}
		want = append(want, e.ID)
	}
	ns.start()
	waitDrained(t, p, 30*time.Second)
	got := ns.readStream(ctx)
	if len(got) != len(want) {
		t.Fatalf("stream holds %d events, want %d (all but %s)", len(got), len(want), tooLarge)
	}
	sizes := map[uint64]int{}
	for i, m := range got {
		if m.msgID != want[i] {
			t.Fatalf("event %d is %s, want %s", i, m.msgID, want[i])
		}
		sizes[m.message] += len(m.data) + 1
		if i == 20 && m.batch != 1 {
			t.Fatalf("an event of %d bytes shares a message of %d events", len(m.data), m.batch)
		}
	}
	batched := false
	for _, m := range got {
		if m.first && m.batch > 1 {
			batched = true
			if s := sizes[m.message]; s > maxPayload/2 {
				t.Fatalf("a batch of %d bytes, over half the max payload", s)
			}
		}
	}
	if !batched {
		t.Fatal("no batch sent")
	}
	if v := testutil.ToFloat64(p.m.dropped); v != 1 {
		t.Fatalf("dropped_total %v, want 1", v)
	}
}

// TestEncodedEventsHaveNoNewline backs the batch framing: neither the
// event encoder nor encoding/json writes a raw newline, even for strings
// full of them.
func TestEncodedEventsHaveNoNewline(t *testing.T) {
	nl := "line 1\nline 2\r\n\u2028end\n"
	evs := []*event.Event{
		func() *event.Event {
			e := event.New(session, event.KindHTTPRequest, time.Now())
			e.HTTPRequest = &event.HTTPRequest{
				Proto: "HTTP/1.1", Method: "POST", URL: "/a?b=" + nl, Host: nl,
				Headers: map[string][]string{"X-" + nl: {nl}},
				Body:    &event.Body{Size: int64(len(nl)), Recorded: int64(len(nl)), Text: nl},
			}
			return e
		}(),
		func() *event.Event {
			e := newEvent(1, 0)
			e.ConnOpen.Refused = nl
			e.Identity = &event.Identity{User: nl, Groups: []string{nl}}
			return e
		}(),
		func() *event.Event {
			e := event.New(session, event.KindStreamData, time.Now())
			e.StreamData = &event.StreamData{Stream: nl, Channel: "stdout", Data: &event.Body{Size: 1, Recorded: 1, Text: nl}}
			return e
		}(),
		func() *event.Event {
			// Encoded by encoding/json, not the hand-written encoder.
			e := event.New(session, event.KindLLMPrompt, time.Now())
			e.LLMPrompt = &event.LLMPrompt{Provider: "openai", Model: nl, System: nl, Tools: []string{nl}}
			return e
		}(),
	}
	for _, e := range evs {
		e.Session, e.Seq = session, 1
		b, err := event.Encode(e)
		if err != nil {
			t.Fatalf("%s: %v", e.Kind, err)
		}
		j, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		for _, out := range [][]byte{b, j} {
			if strings.Contains(string(out), "\n") {
				t.Fatalf("%s encodes with a raw newline: %s", e.Kind, out)
			}
		}
	}
}
