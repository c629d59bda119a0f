package publish

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/chaperone-dev/chaperone/pkg/natsbus"
	"github.com/chaperone-dev/chaperone/sidecar/spool"
)

const (
	backoffMin = 100 * time.Millisecond
	backoffMax = 5 * time.Second
	// connPoll re-checks the connection in case a state change signal was
	// consumed elsewhere.
	connPoll = time.Second
	// gatherDelay is how long the sender, woken by an append after it
	// caught up, waits for more appends before sending. The events are
	// on disk meanwhile; what the wait buys is fewer, fuller messages:
	// measured against 1 ms, the server spent a third less CPU per
	// recorded request at a few thousand requests a second, and the
	// sidecar's wake-ups fell with it (docs/performance.md).
	gatherDelay = 5 * time.Millisecond
	// maxInFlightBytes bounds the data awaiting JetStream's answer, now
	// that a message may carry a batch: enough to keep a link busy, little
	// enough that an ack timeout means trouble, not a long queue. One
	// message always goes, however large.
	maxInFlightBytes = 8 << 20
)

var (
	errDisconnected = errors.New("nats disconnected")
	errNoStream     = errors.New("no JetStream stream takes the subject")
)

// The sender publishes with core NATS and a reply subject of its own per
// message, "<inbox>.<id>", and takes JetStream's acknowledgements on one
// subscription to "<inbox>.*". That is what a JetStream client's
// asynchronous publish does, without a future, two channels, a timer and
// a JSON decoding per message.

// subscribeAcks listens for JetStream's answers. The subscription is the
// connection's for its whole life; the client renews it on reconnect.
func (p *Publisher) subscribeAcks() error {
	p.replyPrefix = p.nc.NewInbox() + "." // prefix-aware: workloads may only subscribe to _INBOX.<session>.>
	if _, err := p.nc.Subscribe(p.replyPrefix+"*", p.onAck); err != nil {
		return fmt.Errorf("subscribe to acks: %w", err)
	}
	return nil
}

// onAck handles one answer: a PubAck acknowledges the message's records
// in the spool; an error (or no stream at all) ends the sender's epoch.
// The client calls it from one goroutine, which owns p.ackPos.
func (p *Publisher) onAck(m *nats.Msg) {
	id, err := strconv.ParseUint(m.Subject[len(p.replyPrefix):], 10, 64)
	if err != nil {
		return
	}
	pos, ok := p.fl.answer(id, pubAckErr(m), p.ackPos[:0])
	p.ackPos = pos
	if ok {
		p.sp.Ack(pos...)
		p.m.acked.Add(float64(len(pos)))
		if p.failing.Load() && p.failing.CompareAndSwap(true, false) {
			p.log.Info("jetstream publish resumed")
		}
	}
	p.fl.signal()
}

// pubAckErr returns the refusal an answer carries, nil for a PubAck. A
// PubAck is {"stream":…,"seq":…}; only refusals are decoded.
func pubAckErr(m *nats.Msg) error {
	if len(m.Data) == 0 {
		if m.Header.Get("Status") == "503" {
			return errNoStream
		}
		return errors.New("jetstream: empty answer")
	}
	if !bytes.Contains(m.Data, []byte(`"error"`)) {
		if bytes.Contains(m.Data, []byte(`"seq"`)) {
			return nil
		}
		return fmt.Errorf("jetstream: unexpected answer %.100q", m.Data)
	}
	var r struct {
		Error struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return fmt.Errorf("jetstream: answer %.100q: %w", m.Data, err)
	}
	return fmt.Errorf("jetstream: %s (code %d, err_code %d)", r.Error.Description, r.Error.Code, r.Error.ErrCode)
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
// ends, at most MaxInFlight unacknowledged. It returns how many messages
// were acknowledged meanwhile. Answers to what is still in flight when it
// ends are ignored; the next epoch sends those records again.
func (p *Publisher) epoch(ctx context.Context, highSent *uint64) (int64, error) {
	r := p.sp.NewReader()
	defer r.Close()
	p.fl.reset(p.nextID)
	err := p.send(ctx, r, highSent)
	p.m.inFlight.Set(0)
	p.fl.mu.Lock()
	acked := p.fl.acked
	p.fl.mu.Unlock()
	return acked, err
}

// send publishes records in spool order, consecutive events in batches.
func (p *Publisher) send(ctx context.Context, r *spool.Reader, highSent *uint64) error {
	// One message and header serve every publish: PublishMsg encodes them
	// before it returns.
	msg := &nats.Msg{Header: nats.Header{}}
	var reply []byte
	k := p.pack
	k.reset()
	timeout := time.NewTimer(p.opts.AckTimeout)
	defer timeout.Stop()
	for {
		n, bytes, oldest, err := p.fl.settle()
		p.m.inFlight.Set(float64(n))
		if err != nil {
			return err
		}
		if n > 0 && time.Since(oldest) >= p.opts.AckTimeout {
			return fmt.Errorf("no jetstream ack within %v", p.opts.AckTimeout)
		}
		if n >= p.opts.MaxInFlight || bytes >= maxInFlightBytes {
			if err := p.await(ctx, timeout, oldest, nil); err != nil || ctx.Err() != nil {
				return err
			}
			continue
		}
		ok, err := k.next(r, p.batchBytes())
		if err != nil {
			return fmt.Errorf("read spool: %w", err)
		}
		if !ok {
			if err := p.await(ctx, timeout, oldest, p.wake); err != nil || ctx.Err() != nil {
				return err
			}
			continue
		}
		k.fill(msg)
		id := p.nextID
		reply = strconv.AppendUint(append(reply[:0], p.replyPrefix...), id, 10)
		msg.Reply = string(reply)
		// The window holds the message before it can be answered.
		p.fl.add(k.pos, len(msg.Data), time.Now())
		p.nextID++
		err = p.nc.PublishMsg(msg)
		if errors.Is(err, nats.ErrMaxPayload) && !k.batched() {
			// Resending cannot help and would block every later event.
			p.log.Error("dropping a spooled message over the server's max payload", keyMsgID, k.id(), keyBytes, len(msg.Data), keyErr, err)
			p.m.dropped.Inc()
			p.fl.answer(id, nil, nil)
			p.sp.Ack(k.pos[0])
			continue
		}
		if err != nil {
			// A batch over the limit (the server's changed under it) is
			// regrouped by the next epoch.
			return fmt.Errorf("publish %s: %w", k.id(), err)
		}
		p.countSent(k, highSent)
	}
}

// countSent updates the metrics for the message just published and the
// highest spool offset ever sent, which tells resent records apart.
func (p *Publisher) countSent(k *packer, highSent *uint64) {
	if strings.HasPrefix(k.first.Subject, natsbus.EventSubjectPrefix) {
		p.m.messageEvents.Observe(float64(len(k.pos)))
	}
	for _, pos := range k.pos {
		if pos.Offset() < *highSent {
			p.m.resent.Inc()
		} else {
			*highSent = pos.End()
		}
	}
}

// batchBytes is the most event data one message may carry: the configured
// cap, and at most half the server's max payload, which leaves ample room
// for the headers.
func (p *Publisher) batchBytes() int {
	b := p.opts.MaxBatchBytes
	if mp := p.nc.MaxPayload(); mp > 0 {
		b = int(min(int64(b), mp/2))
	}
	return b
}

// await waits for something that lets send go on: an answer, an append
// (when more is non-nil), the oldest message's ack deadline, a connection
// change or ctx. It returns an error only when the connection is gone.
func (p *Publisher) await(ctx context.Context, timeout *time.Timer, oldest time.Time, more <-chan struct{}) error {
	var deadline <-chan time.Time
	if !oldest.IsZero() {
		timeout.Reset(time.Until(oldest.Add(p.opts.AckTimeout)))
		deadline = timeout.C
	}
	select {
	case <-ctx.Done():
	case <-p.fl.wake:
	case <-deadline:
	case <-more:
		// Let a burst gather: the records appended meanwhile go out with
		// one spool read and one socket write instead of a wake-up, a read
		// and a write each. Delivery is asynchronous anyway; Publish
		// returned long ago.
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
	return nil
}

// backoff is exponential with equal jitter.
type backoff struct{ cur time.Duration }

func (b *backoff) next() time.Duration {
	b.cur = min(max(2*b.cur, backoffMin), backoffMax)
	half := b.cur / 2
	return half + rand.N(half+1)
}

func (b *backoff) reset() { b.cur = 0 }
