package ingest

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chaperone-dev/chaperone/pkg/natsbus"
)

// fetchWait is how long one pull request stays open on the server. It
// bounds how long a stop waits for the request in flight.
const fetchWait = time.Second

// fetchMaxBytes bounds the data one pull request brings, now that a
// message may be a batch of events: within the client's pending limit for
// a subscription (64 MiB), and room for the largest message the stream
// takes, which a request must always be able to carry.
const fetchMaxBytes = 2 * natsbus.MaxPayload

// fetcher turns consecutive pull requests into one message sequence. Unlike
// a long-lived subscription it always knows which request is open, so a
// stop can take every message the server sent for it.
type fetcher struct {
	cons  jetstream.Consumer
	size  int
	wait  time.Duration
	batch jetstream.MessageBatch
}

// next returns the next message, opening pull requests as needed.
func (f *fetcher) next(ctx context.Context) (jetstream.Msg, error) {
	for {
		if f.batch == nil {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			b, err := f.cons.Fetch(f.size, jetstream.FetchMaxWait(f.wait), jetstream.FetchMaxBytes(fetchMaxBytes))
			if err != nil {
				return nil, fmt.Errorf("fetch: %w", err)
			}
			f.batch = b
		}
		select {
		case m, ok := <-f.batch.Messages():
			if ok {
				return m, nil
			}
			err := f.batch.Error()
			f.batch = nil
			if err != nil {
				return nil, fmt.Errorf("fetch: %w", err)
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// rest returns up to n more messages of the open request, waiting for it
// to end; it returns none once the request is over.
func (f *fetcher) rest(n int) []jetstream.Msg {
	var msgs []jetstream.Msg
	for f.batch != nil && len(msgs) < n {
		m, ok := <-f.batch.Messages()
		if !ok {
			f.batch = nil
			break
		}
		msgs = append(msgs, m)
	}
	return msgs
}
