package sqlite

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/proccpu"
)

// benchEvents returns n HTTP request events of about 1 KiB encoded each,
// spread over a few sessions as an ingest batch from several pods would be.
func benchEvents(n, sessions int, seq *uint64, t0 time.Time) []*event.Event {
	body := strings.Repeat("x", 420)
	out := make([]*event.Event, n)
	for i := range out {
		*seq++
		e := event.New(fmt.Sprintf("bench-%d", i%sessions), event.KindHTTPRequest, t0.Add(time.Duration(*seq)*time.Microsecond))
		e.Seq = *seq
		e.Source = event.SourceSidecar
		e.Identity = &event.Identity{User: "alice@example.com", Namespace: "agents", Pod: "copilot-0", ServiceAccount: "copilot"}
		e.Dest = &event.Destination{Addr: "140.82.112.3:443", Host: "api.github.com", Protocol: "http1"}
		e.Conn = "c1"
		e.Verdict = "allow"
		e.HTTPRequest = &event.HTTPRequest{
			Stream: *seq, Proto: "HTTP/1.1", Method: "POST", URL: "/repos/acme/widgets/pulls", Host: "api.github.com",
			Headers: map[string][]string{"Content-Type": {"application/json"}, "User-Agent": {"copilot-agent/1.0"}},
			Body:    &event.Body{Size: int64(len(body)), Text: body, Recorded: int64(len(body))},
		}
		out[i] = e
	}
	return out
}

// decoded returns events as ingest hands them to Append: decoded from the
// bytes their producer sent, which are then their canonical bytes.
func decoded(tb testing.TB, events []*event.Event) []*event.Event {
	out := make([]*event.Event, len(events))
	for i, e := range events {
		data, err := event.Encode(e)
		if err != nil {
			tb.Fatal(err)
		}
		if out[i], err = event.Decode(data); err != nil {
			tb.Fatal(err)
		}
	}
	return out
}

// BenchmarkAppend measures the ingest hot path: batches of about 1 KiB
// events, each batch one transaction. "encoded" events are built in memory
// (Append encodes them); "decoded" ones come from their producer's bytes,
// as ingest passes them. Batches of 256 over 8 sessions are a loaded
// ingest; batches of 16 from one session are the common case of one busy
// sidecar. ns/event and cpu-ns/event (user and system time of the process)
// count only Append, and cpu-ns/event also the checkpoint of what the last
// Appends left in the WAL.
func BenchmarkAppend(b *testing.B) {
	for _, c := range []struct {
		name            string
		batch, sessions int
		decode          bool
	}{
		{"batch=256/encoded", 256, 8, false},
		{"batch=256/decoded", 256, 8, true},
		{"batch=16/decoded", 16, 1, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			benchAppend(b, c.batch, c.sessions, c.decode)
		})
	}
}

func benchAppend(b *testing.B, batchSize, sessions int, decode bool) {
	s := openTest(b, "")
	defer s.Close()
	ctx := context.Background()
	var seq uint64
	t0 := time.Now()
	if enc, _ := event.Encode(benchEvents(1, 1, new(uint64), t0)[0]); len(enc) < 900 || len(enc) > 1200 {
		b.Fatalf("bench event is %d bytes, want about 1 KiB", len(enc))
	}
	b.ReportAllocs()
	var stored int
	var elapsed, cpu time.Duration
	for b.Loop() {
		b.StopTimer()
		batch := benchEvents(batchSize, sessions, &seq, t0)
		if decode {
			batch = decoded(b, batch)
		}
		b.StartTimer()
		start, cpu0 := time.Now(), proccpu.Used()
		res, err := s.Append(ctx, batch)
		cpu += proccpu.Used() - cpu0
		elapsed += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		stored += res.Stored
	}
	// Every page written goes to the database file at a checkpoint: count
	// the one owed for the last batches too, so the cost per event does not
	// depend on where the benchmark stops.
	cpu0 := proccpu.Used()
	if _, err := s.wdb.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		b.Fatal(err)
	}
	cpu += proccpu.Used() - cpu0
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(stored), "ns/event")
	if cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(stored), "cpu-ns/event")
	}
	b.SetBytes(int64(batchSize) * 1024)
}
