package publish

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/natsbus"
	"github.com/chaperone-dev/chaperone/sidecar/spool"
)

// Defaults for Options.
const (
	DefaultMaxInFlight    = 4096
	DefaultAckTimeout     = 5 * time.Second
	DefaultMaxBatchBytes  = 128 << 10
	DefaultMaxBatchEvents = 256
)

// maxKeptEncodeBuf bounds the encoding buffer kept between events, so that
// one large event does not pin its buffer.
const maxKeptEncodeBuf = 64 << 10

// Errors of a Publisher. Refusals wrap ErrUnavailable together with the
// cause (for example spool.ErrFull); check them with errors.Is.
var (
	// ErrUnavailable means recording cannot be guaranteed right now.
	ErrUnavailable = errors.New("recording unavailable")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("publisher closed")
)

// Log keys.
const (
	keySession = "session"
	keyErr     = "err"
	keyURL     = "url"
	keyRecords = "records"
	keyBytes   = "bytes"
	keyMsgID   = "msg_id"
)

// Options configure a Publisher.
type Options struct {
	// Session is the session id (a pod UID or a `chaperonectl run` id).
	Session string
	// Spool, if set, is used as is and stays the caller's to close.
	// Otherwise the Publisher opens SpoolDir with SpoolOptions and closes
	// it in Close.
	Spool        *spool.Spool
	SpoolDir     string
	SpoolOptions spool.Options
	// NATSURL is where to connect. A server that is down at start is
	// retried in the background; events spool meanwhile.
	NATSURL string
	// NATSOptions are applied after the publisher's defaults (endless
	// reconnects, no reconnect buffer). Handlers set here are still called.
	NATSOptions []nats.Option
	// MaxInFlight bounds messages awaiting a JetStream ack (default 4096).
	MaxInFlight int
	// AckTimeout is how long to wait for one ack before resending from the
	// oldest unacknowledged record (default 5s).
	AckTimeout time.Duration
	// MaxBatchBytes and MaxBatchEvents bound a message that carries several
	// events (defaults 128 KiB and 256; a batch also stays under half the
	// server's max payload). The sender batches only events already in the
	// spool when it reads, so batching adds no latency. MaxBatchEvents 1
	// sends one event per message, for a server that predates batches.
	MaxBatchBytes  int
	MaxBatchEvents int
	// Logger receives state changes; nil discards.
	Logger *slog.Logger
	// Registerer receives the metrics; nil leaves them unregistered.
	Registerer prometheus.Registerer
}

// Publisher spools events and streams them to JetStream. It is safe for
// concurrent use.
type Publisher struct {
	opts     Options
	log      *slog.Logger
	sp       *spool.Spool
	ownSpool bool
	subject  string
	blobSubj string
	nc       *nats.Conn
	m        *metrics

	// The sender's state: the reply subjects' prefix, the window of
	// messages awaiting their ack, the next message id and the packer
	// (sender only), and the ack handler's buffer of positions.
	replyPrefix string
	fl          *flight
	nextID      uint64
	pack        *packer
	ackPos      []spool.Pos

	mu     sync.Mutex // orders sequence numbers with spool appends
	seq    uint64
	enc    []byte // encoding buffer, under mu
	closed atomic.Bool
	// failing is set while JetStream refuses publishes on a live connection,
	// so that the state change is logged once.
	failing atomic.Bool

	wake   chan struct{} // something was appended
	connCh chan struct{} // the connection state changed
	cancel context.CancelFunc
	done   chan struct{}
}

// New opens the spool, connects to NATS (in the background if it is down)
// and starts the sender. Events left in the spool by an earlier run go
// first. ctx bounds only the setup; the Publisher runs until Close.
func New(ctx context.Context, opts Options) (*Publisher, error) {
	if err := event.ValidSession(opts.Session); err != nil {
		return nil, fmt.Errorf("new publisher: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("new publisher: %w", err)
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = DefaultMaxInFlight
	}
	if opts.AckTimeout <= 0 {
		opts.AckTimeout = DefaultAckTimeout
	}
	if opts.MaxBatchBytes <= 0 {
		opts.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if opts.MaxBatchEvents <= 0 {
		opts.MaxBatchEvents = DefaultMaxBatchEvents
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Publisher{
		opts:     opts,
		log:      opts.Logger.With(keySession, opts.Session),
		sp:       opts.Spool,
		subject:  natsbus.EventSubject(opts.Session),
		blobSubj: natsbus.BlobSubject(opts.Session),
		wake:     make(chan struct{}, 1),
		connCh:   make(chan struct{}, 1),
		done:     make(chan struct{}),
		fl:       newFlight(opts.MaxInFlight),
		pack:     newPacker(opts.MaxBatchEvents),
	}
	if p.sp == nil {
		if opts.SpoolDir == "" {
			return nil, errors.New("new publisher: no spool and no spool directory")
		}
		so := opts.SpoolOptions
		if so.Logger == nil {
			so.Logger = opts.Logger
		}
		sp, err := spool.Open(opts.SpoolDir, so)
		if err != nil {
			return nil, fmt.Errorf("new publisher: %w", err)
		}
		p.sp, p.ownSpool = sp, true
	}
	p.seq = p.sp.LastSeq(p.subject)
	p.m = newMetrics(opts.Registerer, p.sp)
	if err := p.connect(); err != nil {
		if p.ownSpool {
			_ = p.sp.Close()
		}
		return nil, fmt.Errorf("new publisher: %w", err)
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.cancel = cancel
	go p.run(sctx)
	return p, nil
}

// connect builds the NATS options around the caller's and connects. With
// RetryOnFailedConnect a down server is not an error: the client keeps
// trying and ConnectedCB fires when it gets through.
func (p *Publisher) connect() error {
	o := nats.GetDefaultOptions()
	o.Url = p.opts.NATSURL
	o.Name = "chaperone-sidecar " + p.opts.Session
	o.MaxReconnect = -1
	o.ReconnectWait = 500 * time.Millisecond
	o.ReconnectJitter = 250 * time.Millisecond
	o.RetryOnFailedConnect = true
	// No client-side buffering while disconnected: the spool is the buffer,
	// and a publish that cannot go out should fail at once.
	o.ReconnectBufSize = -1
	for _, opt := range p.opts.NATSOptions {
		if err := opt(&o); err != nil {
			return fmt.Errorf("nats option: %w", err)
		}
	}
	userDisc, userRecon, userConn, userClosed := o.DisconnectedErrCB, o.ReconnectedCB, o.ConnectedCB, o.ClosedCB
	o.DisconnectedErrCB = func(nc *nats.Conn, err error) {
		p.m.connected.Set(0)
		if !p.closed.Load() {
			p.log.Warn("nats disconnected; spooling events", keyErr, err)
		}
		p.signal(p.connCh)
		if userDisc != nil {
			userDisc(nc, err)
		}
	}
	o.ReconnectedCB = func(nc *nats.Conn) {
		p.m.connected.Set(1)
		p.log.Info("nats reconnected", keyURL, nc.ConnectedUrlRedacted())
		p.signal(p.connCh)
		if userRecon != nil {
			userRecon(nc)
		}
	}
	o.ConnectedCB = func(nc *nats.Conn) {
		p.m.connected.Set(1)
		p.log.Info("nats connected", keyURL, nc.ConnectedUrlRedacted())
		p.signal(p.connCh)
		if userConn != nil {
			userConn(nc)
		}
	}
	o.ClosedCB = func(nc *nats.Conn) {
		p.m.connected.Set(0)
		p.signal(p.connCh)
		if userClosed != nil {
			userClosed(nc)
		}
	}
	nc, err := o.Connect()
	if err != nil {
		return fmt.Errorf("connect to nats %s: %w", p.opts.NATSURL, err)
	}
	if nc.IsConnected() {
		p.m.connected.Set(1)
	}
	p.nc = nc
	if err := p.subscribeAcks(); err != nil {
		nc.Close()
		return err
	}
	return nil
}

func (p *Publisher) signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Publish records e: it sets e.Session and e.Seq (the next per-session
// sequence, in spool order), validates and encodes it, and appends it to
// the spool. It returns once the event is on disk, not when JetStream has
// it. Refusals wrap ErrUnavailable and the cause (spool.ErrFull, an I/O
// error); an invalid event gives the event package's error.
func (p *Publisher) Publish(ctx context.Context, e *event.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if p.closed.Load() {
		return ErrClosed
	}
	p.mu.Lock()
	if p.closed.Load() {
		p.mu.Unlock()
		return ErrClosed
	}
	e.Session = p.opts.Session
	e.Seq = p.seq + 1
	if err := e.Validate(); err != nil {
		p.mu.Unlock()
		return fmt.Errorf("publish: %w", err)
	}
	// The spool copies the bytes, so one buffer serves every event.
	data, err := event.AppendEncode(p.enc[:0], e)
	if err != nil {
		p.mu.Unlock()
		return fmt.Errorf("publish: %w", err)
	}
	if cap(data) <= maxKeptEncodeBuf {
		p.enc = data
	}
	_, err = p.sp.Append(spool.Message{Subject: p.subject, MsgID: e.ID, Data: data, Seq: e.Seq})
	if err != nil {
		p.mu.Unlock()
		return p.refused("event "+e.ID, err)
	}
	p.seq = e.Seq
	p.mu.Unlock()
	p.m.publishedEvents.Inc()
	p.signal(p.wake)
	return nil
}

// PublishBlob records a body stored by content hash ref. Call it before
// publishing the events that reference ref: the spool keeps the order.
func (p *Publisher) PublishBlob(ctx context.Context, ref string, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if p.closed.Load() {
		return ErrClosed
	}
	if ref == "" {
		return errors.New("publish blob: empty ref")
	}
	if mp := p.nc.MaxPayload(); mp > 0 && int64(len(data)) > mp-1024 {
		return fmt.Errorf("publish blob %s: %d bytes over the server's max payload %d", ref, len(data), mp)
	}
	m := spool.Message{
		Subject: p.blobSubj,
		MsgID:   ref,
		Header:  map[string]string{natsbus.BlobRefHeader: ref},
		Data:    data,
	}
	p.mu.Lock()
	if p.closed.Load() {
		p.mu.Unlock()
		return ErrClosed
	}
	_, err := p.sp.Append(m)
	p.mu.Unlock()
	if err != nil {
		return p.refused("blob "+ref, err)
	}
	p.m.publishedBlobs.Inc()
	p.signal(p.wake)
	return nil
}

func (p *Publisher) refused(what string, err error) error {
	if errors.Is(err, spool.ErrFull) {
		p.m.refusedFull.Inc()
	} else {
		p.m.refusedError.Inc()
	}
	if errors.Is(err, spool.ErrTooLarge) {
		return fmt.Errorf("publish %s: %w", what, err)
	}
	return fmt.Errorf("publish %s: %w: %w", what, ErrUnavailable, err)
}

// Accepting reports whether recording can be guaranteed for a new
// connection: nil while the spool is writable and below its limit, else the
// reason (wrapping ErrUnavailable and the cause).
func (p *Publisher) Accepting() error {
	if p.closed.Load() {
		return ErrClosed
	}
	if err := p.sp.Check(); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

// Ready reports whether the publisher can do its job: connected to NATS,
// or at least able to spool.
func (p *Publisher) Ready() error {
	if p.closed.Load() {
		return ErrClosed
	}
	if p.nc.IsConnected() {
		return nil
	}
	if err := p.sp.Check(); err != nil {
		return fmt.Errorf("%w: not connected to nats and cannot spool: %w", ErrUnavailable, err)
	}
	return nil
}

// Pending is the number of spooled records JetStream has not
// acknowledged yet.
func (p *Publisher) Pending() int64 {
	_, recs := p.sp.Usage()
	return recs
}

// Seq is the sequence of the last event published.
func (p *Publisher) Seq() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seq
}

// Close stops taking events, tries to deliver the spool to JetStream until
// ctx is done, and then shuts down. Whatever was not acknowledged stays on
// disk for the next Publisher on the same directory; Close then reports how
// much with ctx's error.
func (p *Publisher) Close(ctx context.Context) error {
	if p.closed.Swap(true) {
		return nil
	}
	p.signal(p.wake)
	var left error
	t := time.NewTicker(20 * time.Millisecond)
	for left == nil {
		b, recs := p.sp.Usage()
		if recs == 0 {
			break
		}
		select {
		case <-ctx.Done():
			left = fmt.Errorf("close publisher: %d records (%d bytes) left in spool %s: %w", recs, b, p.sp.Dir(), ctx.Err())
		case <-t.C:
		}
	}
	t.Stop()
	p.cancel()
	<-p.done
	p.nc.Close()
	var errs []error
	if left != nil {
		errs = append(errs, left)
	}
	if p.ownSpool {
		if err := p.sp.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
