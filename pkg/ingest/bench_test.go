package ingest

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/natsbus"
	"github.com/chaperone-dev/chaperone/pkg/proccpu"
	"github.com/chaperone-dev/chaperone/pkg/store"
	"github.com/chaperone-dev/chaperone/pkg/store/sqlite"
)

// countingStore counts what the wrapped store committed.
type countingStore struct {
	Store
	stored      atomic.Int64
	appendNanos atomic.Int64
}

func (c *countingStore) Append(ctx context.Context, events []*event.Event) (store.AppendResult, error) {
	t0 := time.Now()
	res, err := c.Store.Append(ctx, events)
	c.appendNanos.Add(int64(time.Since(t0)))
	c.stored.Add(int64(res.Stored))
	return res, err
}

// BenchmarkIngest measures sustained ingest from JetStream publish to
// committed SQLite row, with 1 KiB events spread over 16 sessions, sent
// one event per message and in batches of 16 events per message (as a
// sidecar sends a backlog). It reports events/s and cpu-us/op (the
// process's CPU time per event: the publishing client, the embedded
// JetStream server and ingest together) and fails on any loss.
func BenchmarkIngest(b *testing.B) {
	for _, per := range []int{1, 16} {
		name := "single"
		if per > 1 {
			name = fmt.Sprintf("batch%d", per)
		}
		b.Run(name, func(b *testing.B) { benchIngest(b, per) })
	}
}

func benchIngest(b *testing.B, per int) {
	_, js := startNATS(b)
	db, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	cs := &countingStore{Store: db}

	const sessions = 16
	n := b.N
	msgs := benchMessages(b, n, sessions, per)
	reg := prometheus.NewRegistry()
	startIngest(b, Options{Store: cs, JetStream: js, Registerer: reg})

	b.ResetTimer()
	cpu0 := proccpu.Used()
	start := time.Now()
	ctx := context.Background()
	for _, m := range msgs {
		for {
			_, err := js.PublishMsgAsync(m.msg, jetstream.WithMsgID(m.id))
			if err == nil {
				break
			}
			// Too many outstanding publishes: wait for acks, then retry.
			select {
			case <-js.PublishAsyncComplete():
			case <-ctx.Done():
			}
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("publishes not acknowledged")
	}
	waitFor(b, "all events committed", func() bool { return cs.stored.Load() >= int64(n) })
	elapsed, cpu := time.Since(start), proccpu.Used()-cpu0
	b.StopTimer()

	if got := cs.stored.Load(); got != int64(n) {
		b.Fatalf("stored %d events, want %d", got, n)
	}
	b.ReportMetric(float64(n)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(cs.appendNanos.Load())/float64(n), "append-ns/event")
	if cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/event")
	}
	if batches := metricValue(b, reg, "chaperone_ingest_batches_total", nil); batches > 0 {
		b.ReportMetric(float64(n)/batches, "events/batch")
	}
}

type benchMsg struct {
	msg *nats.Msg
	id  string
}

// benchMessages encodes n events of the given sessions, round robin, into
// messages of up to per events of one session each, the sessions' messages
// interleaved.
func benchMessages(b *testing.B, n, sessions, per int) []benchMsg {
	lines := make([][][]byte, sessions)
	ids := make([][]string, sessions)
	for i := range n {
		s := i % sessions
		e := newEvent("bench-"+string(rune('a'+s)), uint64(i/sessions+1), 1024)
		lines[s] = append(lines[s], encode(b, e))
		ids[s] = append(ids[s], e.ID)
	}
	var out []benchMsg
	for lo := 0; lo < len(lines[0]); lo += per {
		for s := range sessions {
			if lo >= len(lines[s]) {
				continue
			}
			hi := min(lo+per, len(lines[s]))
			m := nats.NewMsg(natsbus.EventSubject("bench-" + string(rune('a'+s))))
			if per == 1 {
				m.Data = lines[s][lo]
				out = append(out, benchMsg{msg: m, id: ids[s][lo]})
				continue
			}
			m.Data = batchData(lines[s][lo:hi]...)
			m.Header.Set(natsbus.EventsHeader, strconv.Itoa(hi-lo))
			out = append(out, benchMsg{msg: m, id: natsbus.BatchMsgID(ids[s][lo], hi-lo)})
		}
	}
	return out
}
