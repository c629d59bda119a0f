package streams

import (
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

// MaxChunk is the largest Data a single emitted event carries. Longer
// messages are split into several events.
const MaxChunk = 32 << 10

// maxControl caps buffered control payloads (JSON status and resize
// messages, SPDY control frames). Anything larger is skipped unread.
const maxControl = 64 << 10

// Channel names used in event.StreamData.Channel.
const (
	ChannelStdin  = "stdin"
	ChannelStdout = "stdout"
	ChannelStderr = "stderr"
	ChannelResize = "resize"
	ChannelExit   = "exit"
	ChannelData   = "data"
)

// Protocol names a decoder understands: the WebSocket subprotocols the
// Kubernetes API server negotiates, and SPDY.
const (
	ProtocolChannel           = "channel.k8s.io"
	ProtocolChannelV4         = "v4.channel.k8s.io"
	ProtocolChannelV5         = "v5.channel.k8s.io"
	ProtocolBase64            = "base64.channel.k8s.io"
	ProtocolBase64V4          = "v4.base64.channel.k8s.io"
	ProtocolPortForward       = "portforward.k8s.io"
	ProtocolBase64PortForward = "base64.portforward.k8s.io"
	// ProtocolTunnelPortForward is port-forward as SPDY/3.1 frames carried
	// in WebSocket binary messages (Kubernetes 1.30 and later).
	ProtocolTunnelPortForward = "SPDY/3.1+portforward.k8s.io"
	ProtocolSPDY              = "SPDY/3.1"
)

// Option adjusts a Decoder.
type Option func(*Decoder)

// WithStream sets the name put in event.StreamData.Stream (e.g. "exec-3").
// Port-forward streams get ":PORT" appended.
func WithStream(name string) Option {
	return func(d *Decoder) { d.stream = name }
}

// Decoder watches both directions of one upgraded connection and emits the
// stream events it finds. ClientBytes, ServerBytes and Close may be called
// from the proxy's two copying goroutines; emit is called with the
// decoder's lock held, so it must not call back into the decoder.
type Decoder struct {
	mu     sync.Mutex
	stream string
	emit   func(*event.StreamData)
	closed bool

	// WebSocket framing, one parser per direction.
	client, server *wsReader
	// channels holds per-channel state for the channel protocols.
	ch *channels
	// spdy is set for SPDY and for SPDY tunnelled over WebSocket.
	spdy *spdyConn
}

// NewWebSocket returns a decoder for a connection upgraded to WebSocket
// with the given negotiated subprotocol (the Sec-WebSocket-Protocol
// response header). Unknown subprotocols are decoded as v4.channel.k8s.io.
// The bytes fed are WebSocket frames: after an HTTP/1.1 101 response, the
// connection's bytes; over HTTP/2 extended CONNECT (RFC 8441), the stream's
// DATA payloads.
func NewWebSocket(protocol string, emit func(*event.StreamData), opts ...Option) *Decoder {
	d := newDecoder(emit, opts)
	p := strings.TrimSpace(protocol)
	if strings.EqualFold(p, ProtocolTunnelPortForward) {
		d.spdy = newSPDY(d)
		d.client = newWSReader(true, func(m *wsMessage) { d.spdy.client.feed(m.data) })
		d.server = newWSReader(false, func(m *wsMessage) { d.spdy.server.feed(m.data) })
		return d
	}
	d.ch = newChannels(d, p)
	d.client = newWSReader(true, func(m *wsMessage) { d.ch.message(m, true) })
	d.server = newWSReader(false, func(m *wsMessage) { d.ch.message(m, false) })
	return d
}

// NewSPDY returns a decoder for a connection upgraded to SPDY/3.1, as
// kubectl uses for exec, attach and port-forward when WebSockets are not
// available. The bytes fed are the raw frames each way; SYN_STREAM header
// blocks name each stream's type (stdin, stdout, stderr, error, resize; data
// and error for port-forward).
func NewSPDY(emit func(*event.StreamData), opts ...Option) *Decoder {
	d := newDecoder(emit, opts)
	d.spdy = newSPDY(d)
	return d
}

func newDecoder(emit func(*event.StreamData), opts []Option) *Decoder {
	d := &Decoder{emit: emit}
	for _, o := range opts {
		o(d)
	}
	return d
}

// ClientBytes feeds bytes the client (kubectl) sent towards the API server.
func (d *Decoder) ClientBytes(p []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || len(p) == 0 {
		return
	}
	if d.client != nil {
		d.client.feed(p)
		return
	}
	d.spdy.client.feed(p)
}

// ServerBytes feeds bytes the API server sent back to the client.
func (d *Decoder) ServerBytes(p []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || len(p) == 0 {
		return
	}
	if d.server != nil {
		d.server.feed(p)
		return
	}
	d.spdy.server.feed(p)
}

// Close flushes data still buffered (a message cut off by the connection's
// end) and stops the decoder; later bytes are ignored.
func (d *Decoder) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	if d.client != nil {
		d.client.flush()
		d.server.flush()
	}
	if d.spdy != nil {
		d.spdy.flush()
	}
	d.closed = true
}

// send emits one data event, split into MaxChunk pieces.
func (d *Decoder) send(stream, channel string, p []byte) {
	for len(p) > 0 {
		n := min(len(p), MaxChunk)
		d.emit(&event.StreamData{Stream: d.name(stream), Channel: channel, Data: body(p[:n])})
		p = p[n:]
	}
}

func (d *Decoder) name(sub string) string {
	if sub == "" {
		return d.stream
	}
	return d.stream + ":" + sub
}

// body copies p into an inline event body.
func body(p []byte) *event.Body {
	b := &event.Body{Size: int64(len(p)), Recorded: int64(len(p))}
	if utf8.Valid(p) {
		b.Text = string(p)
	} else {
		b.B64 = append([]byte(nil), p...)
	}
	return b
}
