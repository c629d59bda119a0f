package ingest

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/natsbus"
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
// committed SQLite row, with 1 KiB events spread over 16 sessions. It
// reports events/s, the CPU time of the whole process per event (the
// embedded NATS server and the publishing client included) and fails on
// any loss.
func BenchmarkIngest(b *testing.B) {
	_, js := startNATS(b)
	db, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	cs := &countingStore{Store: db}

	const sessions = 16
	n := b.N
	payloads := make([][]byte, n)
	ids := make([]string, n)
	for i := range n {
		e := newEvent("bench-"+string(rune('a'+i%sessions)), uint64(i/sessions+1), 1024)
		payloads[i] = encode(b, e)
		ids[i] = e.ID
	}
	reg := prometheus.NewRegistry()
	startIngest(b, Options{Store: cs, JetStream: js, Registerer: reg})

	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	ctx := context.Background()
	for i := range n {
		subj := natsbus.EventSubject("bench-" + string(rune('a'+i%sessions)))
		for {
			_, err := js.PublishAsync(subj, payloads[i], jetstream.WithMsgID(ids[i]))
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
	elapsed, cpu := time.Since(start), cpuTime()-cpu0
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
