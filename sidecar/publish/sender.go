package publish

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chaperone-dev/chaperone/sidecar/spool"
)

const (
	backoffMin = 100 * time.Millisecond
	backoffMax = 5 * time.Second
	// connPoll re-checks the connection in case a state change signal was
	// consumed elsewhere.
	connPoll = time.Second
	// gatherDelay is how long the sender, woken by an append after it
	// caught up, waits for more appends before sending.
	gatherDelay = time.Millisecond
)

var errDisconnected = errors.New("nats disconnected")

// inflight is one message awaiting its JetStream ack.
type inflight struct {
	fut jetstream.PubAckFuture
	pos spool.Pos
}

// run is the sender: it streams the spool to JetStream in epochs. An epoch
// starts at the oldest unacknowledged record and ends at the first error;
// the next one starts over from the (now later) oldest unacknowledged
// record, so nothing is skipped and JetStream drops what it already had.
func (p *Publisher) run(ctx context.Context) {
	defer close(p.done)
	var bo backoff
	var highSent uint64
	poll := time.NewTicker(connPoll)
	defer poll.Stop()
	for ctx.Err() == nil {
		if !p.nc.IsConnected() {
			select {
			case <-ctx.Done():
				return
			case <-p.connCh:
			case <-poll.C:
			}
			continue
		}
		acked, err := p.epoch(ctx, &highSent)
		if ctx.Err() != nil {
			return
		}
		if acked > 0 {
			bo.reset()
		}
		if err == nil || !p.nc.IsConnected() {
			// The disconnect is logged by the connection handler; the
			// loop waits for the reconnect.
			continue
		}
		if p.failing.CompareAndSwap(false, true) {
			p.log.Warn("jetstream publish failing; events stay in the spool and are resent", keyErr, err)
		}
		t := time.NewTimer(bo.next())
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// epoch sends from the oldest unacknowledged record until an error or ctx
// ends, then waits for the acks of what it sent. It returns how many
// messages were acknowledged.
func (p *Publisher) epoch(ctx context.Context, highSent *uint64) (int64, error) {
	r := p.sp.NewReader()
	defer r.Close()
	q := make(chan inflight, p.opts.MaxInFlight)
	errc := make(chan error, 1)
	var acked atomic.Int64
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	ackerDone := make(chan struct{})
	go func() {
		defer close(ackerDone)
		p.ackLoop(actx, q, errc, &acked)
	}()
	err := p.send(ctx, r, q, errc, highSent)
	close(q)
	// Futures resolve within AckTimeout (or at once on a disconnect), so
	// this ends; Close cancels ctx to end it sooner.
	<-ackerDone
	p.m.inFlight.Set(0)
	if err == nil {
		select {
		case err = <-errc:
		default:
		}
	}
	return acked.Load(), err
}

// send publishes records in spool order, at most MaxInFlight unacknowledged.
func (p *Publisher) send(ctx context.Context, r *spool.Reader, q chan<- inflight, errc <-chan error, highSent *uint64) error {
	for {
		select {
		case err := <-errc:
			return err
		default:
		}
		m, pos, err := r.Next()
		if errors.Is(err, io.EOF) {
			select {
			case <-ctx.Done():
				return nil
			case err := <-errc:
				return err
			case <-p.wake:
				// Let a burst gather: the records appended meanwhile go
				// out with one spool read and one socket write instead of
				// a wake-up, a read and a write each. Delivery is
				// asynchronous anyway; Publish returned long ago.
				if !p.closed.Load() {
					t := time.NewTimer(gatherDelay)
					select {
					case <-ctx.Done():
					case <-t.C:
					}
					t.Stop()
				}
			case <-p.connCh:
				if !p.nc.IsConnected() {
					return errDisconnected
				}
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("read spool: %w", err)
		}
		msg := &nats.Msg{Subject: m.Subject, Data: m.Data, Header: make(nats.Header, 1+len(m.Header))}
		msg.Header[jetstream.MsgIDHeader] = []string{m.MsgID}
		for k, v := range m.Header {
			msg.Header[k] = []string{v}
		}
		fut, err := p.js.PublishMsgAsync(msg)
		if errors.Is(err, nats.ErrMaxPayload) {
			// Resending cannot help and would block every later event.
			p.log.Error("dropping a spooled message over the server's max payload", keyMsgID, m.MsgID, keyBytes, len(m.Data), keyErr, err)
			p.m.dropped.Inc()
			p.sp.Ack(pos)
			continue
		}
		if err != nil {
			return fmt.Errorf("publish %s: %w", m.MsgID, err)
		}
		if pos.Offset() < *highSent {
			p.m.resent.Inc()
		} else {
			*highSent = pos.End()
		}
		p.m.inFlight.Inc()
		select {
		case q <- inflight{fut: fut, pos: pos}:
		case err := <-errc:
			return err
		case <-ctx.Done():
			return nil
		}
	}
}

// ackLoop waits for the acks in send order and acknowledges the records in
// the spool. It reports the first failure on errc and keeps draining.
func (p *Publisher) ackLoop(ctx context.Context, q <-chan inflight, errc chan<- error, acked *atomic.Int64) {
	for it := range q {
		select {
		case <-it.fut.Ok():
			p.sp.Ack(it.pos)
			acked.Add(1)
			p.m.acked.Inc()
			if p.failing.Load() && p.failing.CompareAndSwap(true, false) {
				p.log.Info("jetstream publish resumed")
			}
		case err := <-it.fut.Err():
			select {
			case errc <- fmt.Errorf("jetstream ack for %s: %w", it.fut.Msg().Header.Get(jetstream.MsgIDHeader), err):
			default:
			}
		case <-ctx.Done():
			return
		}
		p.m.inFlight.Dec()
	}
}

// backoff is exponential with equal jitter.
type backoff struct{ cur time.Duration }

func (b *backoff) next() time.Duration {
	b.cur = min(max(2*b.cur, backoffMin), backoffMax)
	half := b.cur / 2
	return half + rand.N(half+1)
}

func (b *backoff) reset() { b.cur = 0 }
