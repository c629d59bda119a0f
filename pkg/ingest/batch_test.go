package ingest

import (
	"bytes"
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/natsbus"
	"github.com/chaperone-dev/chaperone/pkg/store"
)

// batchData frames encoded events as a batch message's data.
func batchData(lines ...[]byte) []byte {
	var b []byte
	for _, l := range lines {
		b = append(append(b, l...), '\n')
	}
	return b
}

func batchHeader(n int) map[string][]string {
	return map[string][]string{natsbus.EventsHeader: {strconv.Itoa(n)}}
}

func TestParseBatch(t *testing.T) {
	e1, e2 := newEvent("s1", 1, 5), newEvent("s1", 2, 5)
	chained := newEvent("s1", 3, 5)
	chained.Chain = &event.Chain{Index: 7, Hash: "forged"}
	other := newEvent("s2", 1, 5)
	subj := natsbus.EventSubject("s1")

	t.Run("good", func(t *testing.T) {
		p, rej := parse(subj, batchHeader(3), batchData(encode(t, e1), encode(t, e2), encode(t, chained)))
		if rej != nil || len(p.batch) != 3 || len(p.bad) != 0 || p.ev != nil || p.blob != nil {
			t.Fatalf("parse: %+v, %v", p, rej)
		}
		for i, want := range []string{e1.ID, e2.ID, chained.ID} {
			if p.batch[i].ID != want || p.batch[i].Chain != nil {
				t.Fatalf("event %d: %s chain %+v, want %s without chain", i, p.batch[i].ID, p.batch[i].Chain, want)
			}
		}
	})
	t.Run("bad lines are singled out", func(t *testing.T) {
		data := batchData(encode(t, e1), []byte(`{"v":1,"id":`), encode(t, other), encode(t, e2), nil)
		p, rej := parse(subj, batchHeader(5), data)
		if rej != nil {
			t.Fatalf("whole batch rejected: %v", rej)
		}
		if len(p.batch) != 2 || p.batch[0].ID != e1.ID || p.batch[1].ID != e2.ID {
			t.Fatalf("good events %+v", p.batch)
		}
		want := []struct {
			index  int
			reason string
		}{{1, ReasonMalformed}, {2, ReasonSessionMismatch}, {4, ReasonMalformed}}
		if len(p.bad) != len(want) {
			t.Fatalf("bad lines %+v", p.bad)
		}
		for i, w := range want {
			if b := p.bad[i]; b.index != w.index || b.rej.reason != w.reason {
				t.Fatalf("bad line %d: index %d reason %s, want %d %s", i, b.index, b.rej.reason, w.index, w.reason)
			}
		}
		if !bytes.Equal(p.bad[1].data, encode(t, other)) {
			t.Fatalf("bad line data %q", p.bad[1].data)
		}
	})
	for _, c := range []struct {
		name  string
		count []string
		data  []byte
	}{
		{"count over lines", []string{"3"}, batchData(encode(t, e1), encode(t, e2))},
		{"count under lines", []string{"1"}, batchData(encode(t, e1), encode(t, e2))},
		{"no final newline", []string{"1"}, encode(t, e1)},
		{"count not a number", []string{"two"}, batchData(encode(t, e1), encode(t, e2))},
		{"empty count", []string{""}, batchData(encode(t, e1))},
		{"header without value", []string{}, batchData(encode(t, e1))},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, rej := parse(subj, map[string][]string{natsbus.EventsHeader: c.count}, c.data)
			if rej == nil || rej.reason != ReasonMalformed {
				t.Fatalf("rejection %v, want %s", rej, ReasonMalformed)
			}
		})
	}
}

// FuzzParseBatch feeds arbitrary counts and data as a batch message: it
// must never panic, every line must be either a storable event of the
// subject's session or a listed bad line, in order.
func FuzzParseBatch(f *testing.F) {
	e := event.New("fz", event.KindSessionStart, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	e.SessionStart = &event.SessionStart{Origin: "run"}
	b, _ := event.Encode(e)
	f.Add("1", b)
	f.Add("1", batchData(b))
	f.Add("2", batchData(b, b))
	f.Add("3", batchData(b, []byte(`{"v":2}`), []byte("{")))
	f.Add("2", batchData(b, []byte(`{"v":1,"id":"01ARZ3NDEKTSV4RRFFQ69G5FAV","session":"other","time":"2020-01-01T00:00:00Z","kind":"conn.open","conn_open":{}}`)))
	f.Add("0", []byte{})
	f.Add("2", []byte("\n\n"))
	f.Fuzz(func(t *testing.T, count string, data []byte) {
		const subject = "chaperone.events.fz"
		p, rej := parse(subject, map[string][]string{natsbus.EventsHeader: {count}}, data)
		if rej != nil {
			if rej.reason != ReasonMalformed {
				t.Fatalf("batch rejected whole for %s: %v", rej.reason, rej)
			}
			return
		}
		if p.ev != nil || p.blob != nil {
			t.Fatalf("a batch parsed as a single message: %+v", p)
		}
		n, err := strconv.Atoi(count)
		if err != nil || n != len(p.batch)+len(p.bad) {
			t.Fatalf("count %q, %d events and %d bad lines", count, len(p.batch), len(p.bad))
		}
		for _, ev := range p.batch {
			if err := ev.Validate(); err != nil {
				t.Fatalf("accepted invalid event: %v", err)
			}
			if natsbus.EventSubject(ev.Session) != subject || ev.Chain != nil {
				t.Fatalf("accepted event of %q with chain %v", ev.Session, ev.Chain)
			}
		}
		last := -1
		for _, bl := range p.bad {
			if bl.index <= last || bl.index >= n || bl.rej == nil || bl.rej.reason == "" {
				t.Fatalf("bad line %+v after %d", bl, last)
			}
			if bytes.IndexByte(bl.data, '\n') >= 0 {
				t.Fatalf("bad line holds a newline: %q", bl.data)
			}
			last = bl.index
		}
	})
}

// publishBatch publishes events (encoded, or raw lines) as one batch
// message on session's subject with the given message id.
func publishBatch(tb testing.TB, js jetstream.JetStream, session, msgID string, lines ...[]byte) uint64 {
	tb.Helper()
	m := nats.NewMsg(natsbus.EventSubject(session))
	m.Data = batchData(lines...)
	m.Header.Set(natsbus.EventsHeader, strconv.Itoa(len(lines)))
	ack, err := js.PublishMsg(tb.Context(), m, jetstream.WithMsgID(msgID))
	if err != nil {
		tb.Fatal(err)
	}
	return ack.Sequence
}

// TestBatchIngest stores the good events of batch messages, dead-letters
// each bad one as a message of its own, counts events, and leaves the
// stream empty.
func TestBatchIngest(t *testing.T) {
	_, js := startNATS(t)
	st := newMemStore()
	reg := prometheus.NewRegistry()
	startIngest(t, Options{Store: st, JetStream: js, Registerer: reg})
	ctx := t.Context()

	evs, lines := newEvents(t, "bt", 10, 50)
	publishBatch(t, js, "bt", natsbus.BatchMsgID(evs[0].ID, 4), lines[0:4]...)
	bad := [][]byte{[]byte(`{"v":1,"id":`), encode(t, newEvent("someone-else", 1, 1))}
	mixed := [][]byte{lines[4], bad[0], lines[5], lines[6], bad[1]}
	seq := publishBatch(t, js, "bt", natsbus.BatchMsgID(evs[4].ID, len(mixed)), mixed...)
	publishEvent(t, js, evs[7])
	publishBatch(t, js, "bt", natsbus.BatchMsgID(evs[8].ID, 2), lines[8:10]...)

	waitFor(t, "good events stored", func() bool { return st.count() == 10 })
	res, err := st.Verify(ctx, "bt")
	if err != nil || !res.OK || res.Events != 10 {
		t.Fatalf("verify: %+v, %v", res, err)
	}
	i := 0
	_ = st.Events(ctx, "bt", 0, func(e *event.Event) error {
		if e.ID != evs[i].ID {
			t.Errorf("chain index %d holds %s, want %s", i+1, e.ID, evs[i].ID)
		}
		i++
		return nil
	})
	waitFor(t, "events counted", func() bool { return metricValue(t, reg, "chaperone_ingest_events_total", nil) == 10 })

	dls, err := js.Stream(ctx, natsbus.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "dead letters", func() bool {
		info, err := dls.Info(ctx)
		return err == nil && info.State.Msgs == 2
	})
	for k, c := range []struct {
		index  int
		reason string
	}{{1, ReasonMalformed}, {4, ReasonSessionMismatch}} {
		raw, err := dls.GetMsg(ctx, uint64(k+1))
		if err != nil {
			t.Fatal(err)
		}
		wantID := "deadletter-" + strconv.FormatUint(seq, 10) + "-" + strconv.Itoa(c.index)
		if got := raw.Header.Get(jetstream.MsgIDHeader); got != wantID {
			t.Errorf("dead letter %d: msg id %q, want %q", k, got, wantID)
		}
		if got := raw.Header.Get(natsbus.ReasonHeader); got != c.reason {
			t.Errorf("dead letter %d: reason %q, want %q", k, got, c.reason)
		}
		if got := raw.Header.Get(natsbus.SubjectHeader); got != natsbus.EventSubject("bt") {
			t.Errorf("dead letter %d: subject %q", k, got)
		}
		if !bytes.Equal(raw.Data, mixed[c.index]) {
			t.Errorf("dead letter %d: data %q, want %q", k, raw.Data, mixed[c.index])
		}
	}
	if v := metricValue(t, reg, "chaperone_ingest_dead_letters_total", map[string]string{"reason": ReasonMalformed}); v != 1 {
		t.Errorf("dead_letters_total{malformed} = %v, want 1", v)
	}
	waitEventsDrained(t, js)
}

// TestBatchRegrouped sends the same events in batches grouped otherwise,
// as a sidecar resending after an ended epoch may: JetStream keeps them
// all (other message ids), the store keeps each event once.
func TestBatchRegrouped(t *testing.T) {
	_, js := startNATS(t)
	st := newMemStore()
	reg := prometheus.NewRegistry()
	startIngest(t, Options{Store: st, JetStream: js, Registerer: reg})
	evs, lines := newEvents(t, "rg", 5, 20)
	publishBatch(t, js, "rg", natsbus.BatchMsgID(evs[0].ID, 3), lines[0:3]...)
	publishBatch(t, js, "rg", natsbus.BatchMsgID(evs[0].ID, 3), lines[0:3]...) // JetStream drops it
	publishBatch(t, js, "rg", natsbus.BatchMsgID(evs[1].ID, 4), lines[1:5]...)
	publishEvent(t, js, evs[4])
	publishBatch(t, js, "rg", natsbus.BatchMsgID(evs[0].ID, 5), lines...)
	waitFor(t, "events stored", func() bool { return st.count() == 5 })
	waitFor(t, "duplicates counted", func() bool {
		return metricValue(t, reg, "chaperone_ingest_duplicates_total", nil) == 2+1+5
	})
	res, err := st.Verify(t.Context(), "rg")
	if err != nil || !res.OK || res.Events != 5 {
		t.Fatalf("verify: %+v, %v", res, err)
	}
	if v := metricValue(t, reg, "chaperone_ingest_events_total", nil); v != 5 {
		t.Errorf("events_total = %v, want 5", v)
	}
}

// TestBatchSizeCountsEvents makes batch messages count by their events
// toward BatchSize, so one store call stays near it.
func TestBatchSizeCountsEvents(t *testing.T) {
	_, js := startNATS(t)
	st := &largestAppend{memStore: newMemStore()}
	const perMsg, msgs = 50, 20
	var lines [][]byte
	for i := range perMsg * msgs {
		lines = append(lines, encode(t, newEvent("bs", uint64(i+1), 10)))
	}
	for i := range msgs {
		publishBatch(t, js, "bs", "m"+strconv.Itoa(i), lines[i*perMsg:(i+1)*perMsg]...)
	}
	startIngest(t, Options{Store: st, JetStream: js, BatchSize: 100, Linger: time.Second})
	waitFor(t, "events stored", func() bool { return st.count() == perMsg*msgs })
	if got := st.largest.Load(); got != 100 {
		t.Fatalf("the largest store call took %d events, want BatchSize 100", got)
	}
}

// largestAppend remembers the largest Append.
type largestAppend struct {
	*memStore
	largest atomic.Int64
}

func (s *largestAppend) Append(ctx context.Context, events []*event.Event) (store.AppendResult, error) {
	for {
		old := s.largest.Load()
		if int64(len(events)) <= old || s.largest.CompareAndSwap(old, int64(len(events))) {
			break
		}
	}
	return s.memStore.Append(ctx, events)
}
