package streams

import (
	"encoding/base64"
	"encoding/binary"
	"strconv"
	"strings"
)

// Channel numbers of the Kubernetes remote-command WebSocket protocol.
const (
	chStdin  = 0
	chStdout = 1
	chStderr = 2
	chError  = 3
	chResize = 4
	chClose  = 255 // v5: the next byte names a channel the sender closed
)

// channels decodes the channel.k8s.io family and portforward.k8s.io: the
// first byte of every data message names its channel (an ASCII digit in
// the base64 variants, whose payload is base64 text).
type channels struct {
	d           *Decoder
	b64         bool
	portForward bool
	v5          bool

	client, server dirState
	ctl            map[int]*control // error and resize channels
	ports          map[int]*portState
}

// dirState is the message being decoded in one direction.
type dirState struct {
	ch     int
	haveCh bool
	b64    bool   // this message is base64 text
	carry  []byte // base64 characters not yet decoded (< 4)
}

// portState tracks a port-forward channel: the server starts each channel
// with the port number, two bytes little-endian.
type portState struct {
	port    string
	prefix  []byte
	started bool
}

func newChannels(d *Decoder, protocol string) *channels {
	p := strings.ToLower(protocol)
	c := &channels{d: d, ctl: map[int]*control{}, ports: map[int]*portState{}}
	c.b64 = strings.Contains(p, "base64")
	c.portForward = strings.Contains(p, "portforward")
	c.v5 = strings.HasPrefix(p, "v5.")
	return c
}

func (c *channels) message(m *wsMessage, fromClient bool) {
	st := &c.server
	if fromClient {
		st = &c.client
	}
	if m.first {
		*st = dirState{carry: st.carry[:0]}
	}
	data := m.data
	if !st.haveCh {
		if len(data) == 0 {
			return
		}
		ch := int(data[0])
		st.b64 = c.b64 && m.text
		if st.b64 {
			ch = int(data[0]) - '0'
		}
		st.ch, st.haveCh = ch, true
		data = data[1:]
	}
	if st.b64 {
		data = st.decode(data, m.final)
	}
	c.dispatch(st.ch, data, m.final, fromClient)
	if m.final {
		st.haveCh = false
	}
}

// decode turns base64 text into bytes, keeping an incomplete quantum for
// the next piece. Text that is not base64 is passed on as it is.
func (st *dirState) decode(p []byte, final bool) []byte {
	in := append(st.carry, p...)
	n := len(in)
	if !final {
		n -= n % 4
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(n))
	w, err := base64.StdEncoding.Decode(out, in[:n])
	if err != nil {
		st.carry = st.carry[:0]
		return in
	}
	st.carry = append(st.carry[:0], in[n:]...)
	return out[:w]
}

func (c *channels) dispatch(ch int, p []byte, final, fromClient bool) {
	if c.portForward {
		c.port(ch, p, fromClient)
		return
	}
	switch ch {
	case chStdin:
		c.d.send("", ChannelStdin, p)
	case chStdout:
		c.d.send("", ChannelStdout, p)
	case chStderr:
		c.d.send("", ChannelStderr, p)
	case chError, chResize:
		k := kindStatus
		if ch == chResize {
			k = kindResize
		}
		ct := c.ctl[ch]
		if ct == nil {
			ct = &control{kind: k}
			c.ctl[ch] = ct
		}
		ct.write(c.d, "", p)
		if final {
			ct.end(c.d, "")
		}
	case chClose:
		// v5's close signal names one channel. client-go sends it on
		// older protocols too, where it means nothing: only other
		// payloads on channel 255 are kept, as data.
		if !c.v5 && len(p) != 1 {
			c.d.send("", ChannelData, p)
		}
	default:
		c.d.send("", ChannelData, p)
	}
}

// port handles a port-forward channel: even channels carry data, odd ones
// errors, two per forwarded port in the order of the request's ports.
func (c *channels) port(ch int, p []byte, fromClient bool) {
	ps := c.ports[ch]
	if ps == nil {
		ps = &portState{port: "#" + strconv.Itoa(ch/2)}
		c.ports[ch] = ps
	}
	if !fromClient && !ps.started {
		n := min(2-len(ps.prefix), len(p))
		ps.prefix = append(ps.prefix, p[:n]...)
		p = p[n:]
		if len(ps.prefix) == 2 {
			ps.started = true
			ps.port = strconv.Itoa(int(binary.LittleEndian.Uint16(ps.prefix)))
			if pair := c.ports[ch^1]; pair != nil && !pair.started {
				pair.port = ps.port
			}
		}
	}
	switch {
	case ch%2 == 1:
		c.d.send(ps.port, ChannelStderr, p)
	case fromClient:
		c.d.send(ps.port, ChannelStdin, p)
	default:
		c.d.send(ps.port, ChannelStdout, p)
	}
}
