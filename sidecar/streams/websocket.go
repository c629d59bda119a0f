package streams

import "encoding/binary"

// WebSocket opcodes (RFC 6455, section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// wsMessage is a piece of a WebSocket data message. A message arrives as
// one or more pieces: the first has first set, the last has final set.
type wsMessage struct {
	first, final bool
	text         bool
	data         []byte
}

// wsReader parses RFC 6455 frames from one direction of a connection,
// fed in chunks of any size, and hands data message pieces to onMessage.
// Control frames (ping, pong, close) are consumed and dropped; they may
// arrive between the fragments of a message, as the RFC allows.
type wsReader struct {
	fromClient bool
	onMessage  func(*wsMessage)

	hdr [14]byte // partial frame header
	nh  int

	inFrame   bool
	fin       bool
	opcode    byte
	masked    bool
	key       [4]byte
	keyPos    int
	remaining uint64

	// Data message being assembled.
	inMessage bool
	started   bool // first piece of the message already delivered
	text      bool
	buf       []byte
}

func newWSReader(fromClient bool, onMessage func(*wsMessage)) *wsReader {
	return &wsReader{fromClient: fromClient, onMessage: onMessage}
}

func (r *wsReader) feed(p []byte) {
	for len(p) > 0 {
		if !r.inFrame {
			n, ok := r.header(p)
			p = p[n:]
			if !ok {
				return // need more header bytes
			}
			continue
		}
		n := int(min(uint64(len(p)), r.remaining))
		r.payload(p[:n])
		p = p[n:]
		r.remaining -= uint64(n)
		if r.remaining == 0 {
			r.endFrame()
		}
	}
}

// header consumes header bytes from p and reports how many it used and
// whether a complete header has been read.
func (r *wsReader) header(p []byte) (int, bool) {
	used := 0
	for {
		need := 2
		if r.nh >= 2 {
			need = wsHeaderLen(r.hdr[0], r.hdr[1])
		}
		if r.nh >= need {
			break
		}
		if used == len(p) {
			return used, false
		}
		c := copy(r.hdr[r.nh:need], p[used:])
		r.nh += c
		used += c
	}
	h := r.hdr[:r.nh]
	r.nh = 0
	r.fin = h[0]&0x80 != 0
	r.opcode = h[0] & 0x0F
	r.masked = h[1]&0x80 != 0
	off := 2
	switch l := h[1] & 0x7F; l {
	case 126:
		r.remaining = uint64(binary.BigEndian.Uint16(h[2:4]))
		off = 4
	case 127:
		r.remaining = binary.BigEndian.Uint64(h[2:10]) &^ (1 << 63)
		off = 10
	default:
		r.remaining = uint64(l)
	}
	if r.masked {
		copy(r.key[:], h[off:off+4])
	}
	r.keyPos = 0
	r.inFrame = true
	r.startFrame()
	if r.remaining == 0 {
		r.endFrame()
	}
	return used, true
}

// wsHeaderLen is the full header length given its first two bytes.
func wsHeaderLen(_, b1 byte) int {
	n := 2
	switch b1 & 0x7F {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4
	}
	return n
}

func (r *wsReader) startFrame() {
	switch r.opcode {
	case opText, opBinary:
		// A new message; one left unfinished was cut off by a broken peer.
		r.flushMessage(true)
		r.inMessage, r.started = true, false
		r.text = r.opcode == opText
	case opContinuation:
		if !r.inMessage {
			// A continuation with no message: treat as binary data so the
			// bytes are not silently lost.
			r.inMessage, r.started, r.text = true, false, false
		}
	}
}

func (r *wsReader) payload(p []byte) {
	if r.opcode != opText && r.opcode != opBinary && r.opcode != opContinuation {
		return // control or reserved frame: skipped without buffering
	}
	for len(p) > 0 {
		room := MaxChunk - len(r.buf)
		n := min(room, len(p))
		start := len(r.buf)
		r.buf = append(r.buf, p[:n]...)
		if r.masked {
			for i := start; i < len(r.buf); i++ {
				r.buf[i] ^= r.key[r.keyPos&3]
				r.keyPos++
			}
		}
		p = p[n:]
		if len(r.buf) >= MaxChunk {
			r.deliver(false)
		}
	}
}

func (r *wsReader) endFrame() {
	r.inFrame = false
	switch r.opcode {
	case opText, opBinary, opContinuation:
		if r.fin {
			r.deliver(true)
		}
	}
}

// deliver hands the buffered piece of the current message on.
func (r *wsReader) deliver(final bool) {
	if !r.inMessage {
		return
	}
	if len(r.buf) == 0 && !final {
		return
	}
	m := &wsMessage{first: !r.started, final: final, text: r.text, data: r.buf}
	r.started = true
	r.onMessage(m)
	r.buf = r.buf[:0]
	if final {
		r.inMessage = false
		if cap(r.buf) > MaxChunk {
			r.buf = nil
		}
	}
}

// flushMessage ends an unfinished message, delivering what was buffered.
func (r *wsReader) flushMessage(final bool) {
	if r.inMessage {
		r.deliver(final)
	}
}

// flush delivers a message cut off by the end of the connection.
func (r *wsReader) flush() { r.flushMessage(true) }
