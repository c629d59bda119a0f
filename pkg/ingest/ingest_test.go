package ingest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/natsbus"
)

func TestRoundTrip(t *testing.T) {
	_, js := startNATS(t)
	st := newMemStore()
	reg := prometheus.NewRegistry()
	startIngest(t, Options{Store: st, JetStream: js, Registerer: reg})

	body := []byte(strings.Repeat("large body ", 10000))
	ref := refOf(body)
	publishBlob(t, js, "sess-a", ref, body)
	const n = 500
	for i := range n {
		s := []string{"sess-a", "sess-b"}[i%2]
		e := newEvent(s, uint64(i/2+1), 100)
		if i == 0 {
			e.HTTPRequest.Body = &event.Body{Size: int64(len(body)), Recorded: int64(len(body)), Ref: ref}
		}
		publishEvent(t, js, e)
	}
	waitFor(t, "all events stored", func() bool { return st.count() == n })

	for _, s := range []string{"sess-a", "sess-b"} {
		res, err := st.Verify(t.Context(), s)
		if err != nil || !res.OK || res.Events != n/2 {
			t.Fatalf("verify %s: %+v, %v", s, res, err)
		}
	}
	got, err := st.Blob(t.Context(), ref)
	if err != nil || string(got) != string(body) {
		t.Fatalf("blob %s: %d bytes, %v", ref, len(got), err)
	}
	if v := metricValue(t, reg, "chaperone_ingest_events_total", nil); v != n {
		t.Errorf("events_total = %v, want %d", v, n)
	}
	if v := metricValue(t, reg, "chaperone_ingest_blobs_total", nil); v != 1 {
		t.Errorf("blobs_total = %v, want 1", v)
	}
}

func TestDuplicates(t *testing.T) {
	_, js := startNATS(t)
	st := newMemStore()
	reg := prometheus.NewRegistry()
	startIngest(t, Options{Store: st, JetStream: js, Registerer: reg})

	e := newEvent("dup", 1, 10)
	data := encode(t, e)
	subj := natsbus.EventSubject(e.Session)
	ctx := t.Context()
	// Same Nats-Msg-Id: JetStream drops the copy.
	for range 2 {
		if _, err := js.Publish(ctx, subj, data, jetstream.WithMsgID(e.ID)); err != nil {
			t.Fatal(err)
		}
	}
	// A copy JetStream cannot recognise (as after its duplicate window):
	// the store must.
	if _, err := js.Publish(ctx, subj, data, jetstream.WithMsgID("resent-"+e.ID)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first copy stored", func() bool { return st.count() == 1 })
	// And once more after the first copy was certainly stored.
	if _, err := js.Publish(ctx, subj, data, jetstream.WithMsgID("again-"+e.ID)); err != nil {
		t.Fatal(err)
	}
	marker := newEvent("dup", 2, 10)
	publishEvent(t, js, marker)
	waitFor(t, "marker stored", func() bool { return st.count() == 2 })
	waitFor(t, "duplicates counted", func() bool {
		return metricValue(t, reg, "chaperone_ingest_duplicates_total", nil) == 2
	})
	res, err := st.Verify(ctx, "dup")
	if err != nil || !res.OK || res.Events != 2 {
		t.Fatalf("verify: %+v, %v", res, err)
	}
}

func TestDeadLetter(t *testing.T) {
	_, js := startNATS(t)
	st := newMemStore()
	reg := prometheus.NewRegistry()
	startIngest(t, Options{Store: st, JetStream: js, Registerer: reg})

	v2 := strings.Replace(string(encode(t, newEvent("dl", 1, 1))), `"v":1`, `"v":2`, 1)
	noPayload := newEvent("dl", 1, 1)
	noPayload.HTTPRequest = nil
	other := newEvent("someone-else", 1, 1)
	cases := []struct {
		name, reason, subject string
		data                  []byte
		ref                   string
	}{
		{"malformed", ReasonMalformed, natsbus.EventSubject("dl"), []byte(`{"v":1,"id":`), ""},
		{"oversize", ReasonTooLarge, natsbus.EventSubject("dl"), encode(t, newEvent("dl", 1, event.MaxSize)), ""},
		{"version 2", ReasonVersion, natsbus.EventSubject("dl"), []byte(v2), ""},
		{"invalid", ReasonInvalid, natsbus.EventSubject("dl"), encode(t, noPayload), ""},
		{"session mismatch", ReasonSessionMismatch, natsbus.EventSubject("dl"), encode(t, other), ""},
		{"blob mismatch", ReasonBlobMismatch, natsbus.BlobSubject("dl"), []byte("not the bytes"), refOf([]byte("the bytes"))},
	}
	ctx := t.Context()
	for i, c := range cases {
		m := nats.NewMsg(c.subject)
		m.Data = c.data
		if c.ref != "" {
			m.Header.Set(natsbus.BlobRefHeader, c.ref)
		}
		if _, err := js.PublishMsg(ctx, m, jetstream.WithMsgID(fmt.Sprintf("bad-%d", i))); err != nil {
			t.Fatalf("%s: publish: %v", c.name, err)
		}
	}
	good := newEvent("dl", 2, 10)
	publishEvent(t, js, good)
	waitFor(t, "good event stored", func() bool { return st.count() == 1 })

	dls, err := js.Stream(ctx, natsbus.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "dead letters", func() bool {
		info, err := dls.Info(ctx)
		return err == nil && info.State.Msgs == uint64(len(cases))
	})
	for i, c := range cases {
		raw, err := dls.GetMsg(ctx, uint64(i+1))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := raw.Header.Get(natsbus.ReasonHeader); got != c.reason {
			t.Errorf("%s: reason %q, want %q (%s)", c.name, got, c.reason, raw.Header.Get(natsbus.ErrorHeader))
		}
		if got := raw.Header.Get(natsbus.SubjectHeader); got != c.subject {
			t.Errorf("%s: subject header %q, want %q", c.name, got, c.subject)
		}
		if string(raw.Data) != string(c.data) {
			t.Errorf("%s: dead letter data differs", c.name)
		}
		if v := metricValue(t, reg, "chaperone_ingest_dead_letters_total", map[string]string{"reason": c.reason}); v != 1 {
			t.Errorf("%s: dead_letters_total{reason=%s} = %v, want 1", c.name, c.reason, v)
		}
	}
	// Nothing is left on the events stream: bad messages were terminated.
	waitEventsDrained(t, js)
}

func TestStoreErrorRetries(t *testing.T) {
	_, js := startNATS(t)
	st := newMemStore()
	var failures atomic.Int32
	st.fail = func() error {
		if failures.Add(1) <= 3 {
			return errors.New("disk on fire")
		}
		return nil
	}
	reg := prometheus.NewRegistry()
	startIngest(t, Options{Store: st, JetStream: js, Registerer: reg})
	const n = 50
	for i := range n {
		publishEvent(t, js, newEvent("retry", uint64(i+1), 10))
	}
	waitFor(t, "events stored after store errors", func() bool { return st.count() == n })
	if v := metricValue(t, reg, "chaperone_ingest_store_errors_total", nil); v != 3 {
		t.Errorf("store_errors_total = %v, want 3", v)
	}
	res, err := st.Verify(t.Context(), "retry")
	if err != nil || !res.OK || res.Events != n {
		t.Fatalf("verify: %+v, %v", res, err)
	}
	// Stored in the order published despite the retries.
	i := uint64(0)
	_ = st.Events(t.Context(), "retry", 0, func(e *event.Event) error {
		i++
		if e.Seq != i {
			t.Errorf("chain index %d holds seq %d", i, e.Seq)
		}
		return nil
	})
}

// TestRestart publishes 10,000 events while the ingester is stopped and
// started twice; every event is stored exactly once, in a valid chain.
func TestRestart(t *testing.T) {
	_, js := startNATS(t)
	st := newMemStore()
	const n = 10000
	sessions := []string{"r1", "r2", "r3"}

	var published atomic.Int64
	pubDone := make(chan error, 1)
	go func() {
		ctx := context.Background()
		for i := range n {
			s := sessions[i%len(sessions)]
			e := newEvent(s, uint64(i/len(sessions)+1), 64)
			b, err := event.Encode(e)
			if err != nil {
				pubDone <- err
				return
			}
			if _, err := js.Publish(ctx, natsbus.EventSubject(s), b, jetstream.WithMsgID(e.ID)); err != nil {
				pubDone <- err
				return
			}
			published.Add(1)
		}
		pubDone <- nil
	}()

	for _, at := range []int{n / 4, n / 2} {
		r := startIngest(t, Options{Store: st, JetStream: js, BatchSize: 200})
		waitFor(t, "progress", func() bool { return published.Load() >= int64(at) && st.count() > 0 })
		if err := r.stop(); err != nil {
			t.Fatal(err)
		}
	}
	startIngest(t, Options{Store: st, JetStream: js, BatchSize: 200})
	if err := <-pubDone; err != nil {
		t.Fatal(err)
	}
	waitFor(t, "all stored", func() bool { return st.count() == n })

	total := uint64(0)
	for _, s := range sessions {
		res, err := st.Verify(t.Context(), s)
		if err != nil || !res.OK {
			t.Fatalf("verify %s: %+v, %v", s, res, err)
		}
		total += res.Events
	}
	if total != n {
		t.Fatalf("stored %d events, want %d", total, n)
	}
	// The stream is empty: everything was acknowledged after the commit.
	es, err := js.Stream(t.Context(), natsbus.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "events stream drained", func() bool {
		info, err := es.Info(t.Context())
		return err == nil && info.State.Msgs == 0
	})
}

func TestReadyFollowsRun(t *testing.T) {
	_, js := startNATS(t)
	r := startIngest(t, Options{Store: newMemStore(), JetStream: js})
	if err := r.in.Ready(); err != nil {
		t.Fatalf("ready while running: %v", err)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if err := r.in.Ready(); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("ready after stop: %v", err)
	}
}
