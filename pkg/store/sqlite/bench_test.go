package sqlite

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
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

// BenchmarkAppend measures the ingest hot path: batches of 256 events of
// about 1 KiB over 8 sessions, each batch one transaction.
func BenchmarkAppend(b *testing.B) {
	const batchSize = 256
	s := openTest(b, "")
	defer s.Close()
	ctx := context.Background()
	var seq uint64
	t0 := time.Now()
	if enc, _ := event.Encode(benchEvents(1, 1, new(uint64), t0)[0]); len(enc) < 900 || len(enc) > 1200 {
		b.Fatalf("bench event is %d bytes, want about 1 KiB", len(enc))
	}
	var stored int
	var elapsed time.Duration
	for b.Loop() {
		b.StopTimer()
		batch := benchEvents(batchSize, 8, &seq, t0)
		b.StartTimer()
		start := time.Now()
		res, err := s.Append(ctx, batch)
		elapsed += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		stored += res.Stored
	}
	b.ReportMetric(float64(stored)/elapsed.Seconds(), "events/s")
	b.SetBytes(batchSize * 1024)
}
