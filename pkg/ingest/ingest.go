package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/natsbus"
	"github.com/chaperone-dev/chaperone/pkg/store"
)

// Store is what ingest needs of the store.
type Store interface {
	Append(ctx context.Context, events []*event.Event) (store.AppendResult, error)
	PutBlobs(ctx context.Context, blobs []store.Blob) error
}

// ErrNotRunning is returned by Ready while the ingester is not consuming.
var ErrNotRunning = errors.New("ingest not running")

// Defaults for Options.
const (
	DefaultBatchSize     = 1000
	DefaultLinger        = 20 * time.Millisecond
	DefaultAckWait       = time.Minute
	DefaultCommitTimeout = 30 * time.Second
)

// Options configures an Ingester.
type Options struct {
	// Store receives the events and blobs. Required.
	Store Store
	// JetStream is the context the consumer is created on. Required.
	JetStream jetstream.JetStream
	// Logger; nil discards.
	Logger *slog.Logger
	// Registerer receives the ingest metrics; nil registers nothing. Use a
	// registry per Ingester: a second registration fails.
	Registerer prometheus.Registerer
	// BatchSize is how many events are collected for one store call
	// (default DefaultBatchSize). A message is never split, so a batch of
	// messages may pass it by the events of its last message.
	BatchSize int
	// Linger is how long a batch waits for more messages once it has one
	// (default DefaultLinger). Under load batches fill without waiting;
	// at a few thousand events a second a longer wait means fewer commits
	// and acknowledgements (20 ms against 5 ms: a fifth to a third less
	// CPU per event), at the price of events reaching the store that
	// much later. They are in JetStream meanwhile.
	Linger time.Duration
	// AckWait is how long JetStream waits for an ack before redelivering
	// (default DefaultAckWait).
	AckWait time.Duration
	// MaxAckPending bounds the messages delivered and not yet acked
	// (default 20 × BatchSize).
	MaxAckPending int
	// CommitTimeout bounds one store write, also the last one during a
	// graceful stop (default DefaultCommitTimeout).
	CommitTimeout time.Duration
}

// Ingester consumes the events stream into the store.
type Ingester struct {
	o       Options
	log     *slog.Logger
	m       *metrics
	running atomic.Bool
}

// New returns an Ingester; Run starts it.
func New(o Options) (*Ingester, error) {
	if o.Store == nil || o.JetStream == nil {
		return nil, errors.New("ingest: store and jetstream are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.Linger <= 0 {
		o.Linger = DefaultLinger
	}
	if o.AckWait <= 0 {
		o.AckWait = DefaultAckWait
	}
	if o.MaxAckPending <= 0 {
		o.MaxAckPending = 20 * o.BatchSize
	}
	if o.CommitTimeout <= 0 {
		o.CommitTimeout = DefaultCommitTimeout
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	return &Ingester{o: o, log: o.Logger, m: m}, nil
}

// ConsumerConfig is the durable pull consumer the Ingester reads from.
func (in *Ingester) ConsumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       natsbus.IngestConsumer,
		Description:   "chaperone-server ingest into the store",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       in.o.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: in.o.MaxAckPending,
	}
}

// Ready reports whether the Ingester is consuming.
func (in *Ingester) Ready() error {
	if !in.running.Load() {
		return ErrNotRunning
	}
	return nil
}

// Run consumes until ctx is cancelled. On cancellation it commits and
// acknowledges the batch in flight, hands back the messages it had
// prefetched, and returns nil. Errors from NATS are retried with back-off.
func (in *Ingester) Run(ctx context.Context) error {
	bo := backoff{min: 100 * time.Millisecond, max: 10 * time.Second}
	for {
		err := in.consume(ctx)
		if ctx.Err() != nil {
			return nil
		}
		in.log.Warn("ingest consumer stopped, restarting", "error", err)
		if !bo.sleep(ctx) {
			return nil
		}
	}
}

// consume runs the consumer until ctx is done or it fails. Two stages
// overlap: one goroutine fetches and decodes the next batch while this one
// commits and acknowledges the previous. Batches are committed in order.
func (in *Ingester) consume(ctx context.Context) error {
	cons, err := in.o.JetStream.CreateOrUpdateConsumer(ctx, natsbus.EventsStream, in.ConsumerConfig())
	if err != nil {
		return fmt.Errorf("ensure consumer %s: %w", natsbus.IngestConsumer, err)
	}
	f := &fetcher{cons: cons, size: 2 * in.o.BatchSize, wait: fetchWait}
	in.running.Store(true)
	defer in.running.Store(false)
	in.log.Info("ingest consuming", "consumer", natsbus.IngestConsumer, "batch", in.o.BatchSize)

	acks := newAcker(in.log)
	batches := make(chan *batch, 1)
	var fetchErr error
	go func() {
		defer close(batches)
		fetchErr = in.prepareLoop(ctx, f, batches)
	}()
	for b := range batches {
		in.store(ctx, b, acks)
	}
	acks.wait()
	if err := in.o.JetStream.Conn().FlushTimeout(5 * time.Second); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		in.log.Warn("flush acks", "error", err)
	}
	return fetchErr
}

// prepareLoop collects and decodes batches until ctx is done or fetching
// fails. When ctx is done it also prepares what the pull request in flight
// still delivers, so that no message is left delivered and unacknowledged
// (JetStream would hold it back for AckWait). The consumer of out must
// drain it.
func (in *Ingester) prepareLoop(ctx context.Context, f *fetcher, out chan<- *batch) error {
	for {
		msgs, err := in.collect(ctx, f)
		if len(msgs) > 0 {
			out <- in.prepare(ctx, msgs)
		}
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			for {
				msgs := f.rest(in.o.BatchSize)
				if len(msgs) == 0 {
					break
				}
				out <- in.prepare(ctx, msgs)
			}
		}
		return err
	}
}

// collect blocks for one message, then takes whatever else arrives within
// Linger, up to BatchSize events.
func (in *Ingester) collect(ctx context.Context, f *fetcher) ([]jetstream.Msg, error) {
	first, err := f.next(ctx)
	if err != nil {
		return nil, err
	}
	msgs := make([]jetstream.Msg, 1, in.o.BatchSize)
	msgs[0] = first
	events := eventCount(first)
	lctx, cancel := context.WithTimeout(ctx, in.o.Linger)
	defer cancel()
	for events < in.o.BatchSize {
		m, err := f.next(lctx)
		if err != nil {
			if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
				return msgs, nil
			}
			return msgs, err
		}
		msgs = append(msgs, m)
		events += eventCount(m)
	}
	return msgs, nil
}

// eventCount is how many events m says it carries: its
// natsbus.EventsHeader, else one. A bad header counts one; parsing
// rejects it later.
func eventCount(m jetstream.Msg) int {
	v := m.Headers()[natsbus.EventsHeader]
	if len(v) == 0 {
		return 1
	}
	n, err := natsbus.ParseEventCount(v[0])
	if err != nil {
		return 1
	}
	return n
}

// batch is a decoded set of messages ready for the store.
type batch struct {
	start  time.Time
	size   int
	good   []jetstream.Msg
	events []*event.Event
	blobs  []store.Blob
	dups   int
	last   jetstream.Msg
}

// prepare decodes and checks msgs. Bad messages, and the bad events of
// batch messages, are dead-lettered here; events repeated inside the
// batch are dropped.
func (in *Ingester) prepare(ctx context.Context, msgs []jetstream.Msg) *batch {
	b := &batch{start: time.Now(), size: len(msgs), good: make([]jetstream.Msg, 0, len(msgs)), last: msgs[len(msgs)-1]}
	// Bad messages are handled even while stopping.
	wctx := context.WithoutCancel(ctx)
	seen := make(map[string]struct{}, len(msgs))
	results := parseAll(msgs)
	for i, m := range msgs {
		p, rej := results[i].p, results[i].rej
		if rej != nil {
			in.deadLetter(wctx, m, rej)
			continue
		}
		if len(p.bad) > 0 && !in.deadLetterEvents(wctx, m, p.bad) {
			continue // the whole message comes again
		}
		b.good = append(b.good, m)
		switch {
		case p.ev != nil:
			b.addEvent(p.ev, seen)
		case p.blob != nil:
			b.blobs = append(b.blobs, *p.blob)
		}
		for _, ev := range p.batch {
			b.addEvent(ev, seen)
		}
	}
	return b
}

// addEvent adds ev unless the batch has it already.
func (b *batch) addEvent(ev *event.Event, seen map[string]struct{}) {
	if _, ok := seen[ev.ID]; ok {
		b.dups++
		return
	}
	seen[ev.ID] = struct{}{}
	b.events = append(b.events, ev)
}

type parseResult struct {
	p   parsed
	rej *rejection
}

// parseAll parses msgs on every CPU: decoding is the costliest step of
// ingest after the store write. Each goroutine takes a run of messages
// of about the same number of bytes, as a message may be one event or a
// batch of hundreds.
func parseAll(msgs []jetstream.Msg) []parseResult {
	out := make([]parseResult, len(msgs))
	total := 0
	for _, m := range msgs {
		total += len(m.Data())
	}
	workers := min(runtime.GOMAXPROCS(0), total/minBytesPerWorker+1, len(msgs))
	if workers <= 1 {
		parseRange(msgs, out)
		return out
	}
	var wg sync.WaitGroup
	per := total / workers
	lo := 0
	for w := range workers {
		hi, size := lo, 0
		for hi < len(msgs) && (size < per || w == workers-1) {
			size += len(msgs[hi].Data())
			hi++
		}
		part, res := msgs[lo:hi], out[lo:hi]
		wg.Go(func() { parseRange(part, res) })
		lo = hi
	}
	wg.Wait()
	return out
}

func parseRange(msgs []jetstream.Msg, out []parseResult) {
	for i, m := range msgs {
		out[i].p, out[i].rej = parse(m.Subject(), m.Headers(), m.Data())
	}
}

// minBytesPerWorker keeps small batches on one goroutine.
const minBytesPerWorker = 64 << 10

// store commits a batch and acknowledges it. A store error is retried in
// place with back-off, which keeps the session order; while retrying the
// messages are kept from redelivery. If ctx ends while the store still
// fails, the messages are handed back unacknowledged. The batch in flight
// is finished even when ctx is cancelled.
func (in *Ingester) store(ctx context.Context, b *batch, acks *acker) {
	if len(b.good) == 0 {
		return
	}
	wctx := context.WithoutCancel(ctx)
	bo := backoff{min: 50 * time.Millisecond, max: 10 * time.Second}
	var res store.AppendResult
	for {
		var err error
		res, err = in.commit(wctx, b.blobs, b.events)
		if err == nil {
			break
		}
		in.m.storeErrors.Inc()
		in.log.Error("store batch, will retry", slog.Int("events", len(b.events)), slog.Int("blobs", len(b.blobs)), slog.Any("error", err))
		for _, m := range b.good {
			_ = m.InProgress()
		}
		if !bo.sleep(ctx) {
			for _, m := range b.good {
				_ = m.Nak()
			}
			return
		}
	}
	acks.ack(b.good)
	in.log.Debug("batch committed", slog.Int("messages", b.size), slog.Int("stored", res.Stored), slog.Int("duplicates", res.Duplicates+b.dups))
	in.m.events.Add(float64(res.Stored))
	in.m.duplicates.Add(float64(res.Duplicates + b.dups))
	in.m.blobs.Add(float64(len(b.blobs)))
	in.m.batches.Inc()
	in.m.batchSize.Observe(float64(b.size))
	in.m.batchTime.Observe(time.Since(b.start).Seconds())
	if md, err := b.last.Metadata(); err == nil {
		in.m.pending.Set(float64(md.NumPending))
	}
}

// acker acknowledges committed batches. All but the last ack of a batch are
// sent without waiting; the last asks for the server's confirmation, in
// the background so the next batch can be committed meanwhile. JetStream
// applies a consumer's acks in order, so once it is confirmed the whole
// batch is acknowledged. wait is called before the connection may close:
// an embedded server shutting down drops acks it queued but not applied.
type acker struct {
	log      *slog.Logger
	inflight chan struct{}
	wg       sync.WaitGroup
}

func newAcker(log *slog.Logger) *acker {
	return &acker{log: log, inflight: make(chan struct{}, maxUnconfirmedBatches)}
}

// maxUnconfirmedBatches bounds the batches whose ack confirmation is
// outstanding; beyond it the committer waits, so acks cannot pile up.
const maxUnconfirmedBatches = 4

func (a *acker) ack(msgs []jetstream.Msg) {
	for _, m := range msgs[:len(msgs)-1] {
		// A lost ack only means a redelivery, which the store de-duplicates.
		_ = m.Ack()
	}
	last := msgs[len(msgs)-1]
	a.inflight <- struct{}{}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer func() { <-a.inflight }()
		ctx, cancel := context.WithTimeout(context.Background(), ackTimeout)
		defer cancel()
		if err := last.DoubleAck(ctx); err != nil {
			a.log.Warn("batch ack not confirmed; the batch may be redelivered and de-duplicated",
				slog.Int("messages", len(msgs)), slog.Any("error", err))
		}
	}()
}

// wait blocks until every batch's ack is confirmed or timed out.
func (a *acker) wait() { a.wg.Wait() }

// ackTimeout bounds the wait for a batch's ack confirmation.
const ackTimeout = 5 * time.Second

func (in *Ingester) commit(ctx context.Context, blobs []store.Blob, events []*event.Event) (store.AppendResult, error) {
	ctx, cancel := context.WithTimeout(ctx, in.o.CommitTimeout)
	defer cancel()
	if len(blobs) > 0 {
		// Blobs first: an event must never be stored before the body it
		// refers to.
		if err := in.o.Store.PutBlobs(ctx, blobs); err != nil {
			return store.AppendResult{}, fmt.Errorf("put %d blobs: %w", len(blobs), err)
		}
	}
	if len(events) == 0 {
		return store.AppendResult{}, nil
	}
	res, err := in.o.Store.Append(ctx, events)
	if err != nil {
		return res, fmt.Errorf("append %d events: %w", len(events), err)
	}
	return res, nil
}

// deadLetter copies m to the dead-letter stream and terminates it. If the
// copy cannot be published, m is left for redelivery instead.
func (in *Ingester) deadLetter(ctx context.Context, m jetstream.Msg, rej *rejection) {
	log := in.log.With(slog.String("subject", m.Subject()), slog.String("reason", rej.reason), slog.Any("error", rej.err))
	id := ""
	if seq, ok := streamSeq(m); ok {
		// A redelivered bad message is dead-lettered once.
		id = "deadletter-" + seq
	}
	if err := in.publishDeadLetter(ctx, m.Subject(), m.Data(), rej, id); err != nil {
		log.Error("dead-letter publish, message left for redelivery", slog.Any("publish_error", err))
		_ = m.NakWithDelay(deadLetterRetry)
		return
	}
	in.m.deadLetters.WithLabelValues(rej.reason).Inc()
	log.Warn("message dead-lettered")
	_ = m.TermWithReason(rej.reason)
}

// deadLetterEvents copies each bad event of batch message m to the
// dead-letter stream, as a message of its own. It returns false, and
// leaves m for redelivery, if a copy cannot be published: the copies that
// made it are then recognised by their message id.
func (in *Ingester) deadLetterEvents(ctx context.Context, m jetstream.Msg, bad []badEvent) bool {
	seq, hasSeq := streamSeq(m)
	for _, be := range bad {
		log := in.log.With(slog.String("subject", m.Subject()), slog.Int("index", be.index),
			slog.String("reason", be.rej.reason), slog.Any("error", be.rej.err))
		id := ""
		if hasSeq {
			id = "deadletter-" + seq + "-" + strconv.Itoa(be.index)
		}
		if err := in.publishDeadLetter(ctx, m.Subject(), be.data, be.rej, id); err != nil {
			log.Error("dead-letter publish, batch message left for redelivery", slog.Any("publish_error", err))
			_ = m.NakWithDelay(deadLetterRetry)
			return false
		}
		in.m.deadLetters.WithLabelValues(be.rej.reason).Inc()
		log.Warn("event of a batch dead-lettered")
	}
	return true
}

// deadLetterRetry is how long a message whose dead-letter copy could not
// be published waits for redelivery.
const deadLetterRetry = 5 * time.Second

// publishDeadLetter publishes data, first published on subject, to the
// dead-letter stream with the reason; msgID, if set, de-duplicates it.
func (in *Ingester) publishDeadLetter(ctx context.Context, subject string, data []byte, rej *rejection, msgID string) error {
	dl := nats.NewMsg(natsbus.DeadLetterSubject)
	dl.Data = data
	dl.Header.Set(natsbus.ReasonHeader, rej.reason)
	dl.Header.Set(natsbus.ErrorHeader, truncate(rej.err.Error(), 1024))
	dl.Header.Set(natsbus.SubjectHeader, subject)
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := in.o.JetStream.PublishMsg(pctx, dl, opts...); err != nil {
		return fmt.Errorf("publish dead letter: %w", err)
	}
	return nil
}

// streamSeq is m's sequence in the stream, in decimal.
func streamSeq(m jetstream.Msg) (string, bool) {
	md, err := m.Metadata()
	if err != nil {
		return "", false
	}
	return strconv.FormatUint(md.Sequence.Stream, 10), true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// backoff is an exponential delay between retries.
type backoff struct {
	min, max, cur time.Duration
}

// sleep waits the next delay; it returns false if ctx ended first.
func (b *backoff) sleep(ctx context.Context) bool {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	t := time.NewTimer(b.cur)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
