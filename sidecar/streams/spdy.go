package streams

import (
	"compress/zlib"
	"encoding/binary"
	"io"
	"strings"
)

// SPDY/3.1 control frame types (SPDY Protocol Draft 3.1, section 2.6).
const (
	spdySynStream    = 1
	spdySynReply     = 2
	spdyRstStream    = 3
	spdySettings     = 4
	spdyPing         = 6
	spdyGoAway       = 7
	spdyHeaders      = 8
	spdyWindowUpdate = 9

	spdyFlagFin = 0x01

	// maxSPDYStreams bounds the stream table; later streams are decoded
	// without their type.
	maxSPDYStreams = 1024
	// maxHeaderPairs bounds a header block's declared pair count.
	maxHeaderPairs = 256
)

// spdyConn is the state shared by both directions of a SPDY connection:
// the streams, named by the streamType header of their SYN_STREAM.
type spdyConn struct {
	d              *Decoder
	client, server *spdyReader
	streams        map[uint32]*spdyStream
}

type spdyStream struct {
	typ  string // streamtype header: stdin, stdout, stderr, error, resize, data
	port string // port header of port-forward streams
	ctl  *control
}

func newSPDY(d *Decoder) *spdyConn {
	c := &spdyConn{d: d, streams: map[uint32]*spdyStream{}}
	c.client = &spdyReader{c: c, fromClient: true}
	c.server = &spdyReader{c: c}
	return c
}

func (c *spdyConn) flush() {
	c.client.flushData()
	c.server.flushData()
	for _, s := range c.streams {
		if s.ctl != nil {
			s.ctl.end(c.d, s.port)
		}
	}
}

// spdyReader parses the frames of one direction.
type spdyReader struct {
	c          *spdyConn
	fromClient bool

	hdr [8]byte
	nh  int

	inFrame   bool
	control   bool
	ftype     uint16
	flags     byte
	stream    uint32
	remaining int
	skip      bool // control frame too large to buffer
	buf       []byte

	// Header decompression: one zlib stream per direction, spanning all
	// header blocks, fed through src.
	src    feedReader
	z      io.ReadCloser
	broken bool
}

func (r *spdyReader) feed(p []byte) {
	for len(p) > 0 {
		if !r.inFrame {
			n := copy(r.hdr[r.nh:], p)
			r.nh += n
			p = p[n:]
			if r.nh < len(r.hdr) {
				return
			}
			r.nh = 0
			r.start()
			if r.remaining == 0 {
				r.end()
			}
			continue
		}
		n := min(len(p), r.remaining)
		r.payload(p[:n])
		p = p[n:]
		r.remaining -= n
		if r.remaining == 0 {
			r.end()
		}
	}
}

func (r *spdyReader) start() {
	h := r.hdr[:]
	r.inFrame = true
	r.control = h[0]&0x80 != 0
	r.flags = h[4]
	r.remaining = int(h[5])<<16 | int(h[6])<<8 | int(h[7])
	r.skip = false
	r.buf = r.buf[:0]
	if r.control {
		r.ftype = binary.BigEndian.Uint16(h[2:4])
		if r.remaining > maxControl {
			r.skip = true
		}
		return
	}
	r.stream = binary.BigEndian.Uint32(h[0:4]) & 0x7FFFFFFF
}

func (r *spdyReader) payload(p []byte) {
	if r.skip {
		return
	}
	if r.control {
		r.buf = append(r.buf, p...)
		return
	}
	for len(p) > 0 {
		n := min(MaxChunk-len(r.buf), len(p))
		r.buf = append(r.buf, p[:n]...)
		p = p[n:]
		if len(r.buf) >= MaxChunk {
			r.flushData()
		}
	}
}

func (r *spdyReader) end() {
	r.inFrame = false
	if !r.control {
		r.flushData()
		if r.flags&spdyFlagFin != 0 {
			r.c.finish(r.stream)
		}
		return
	}
	if r.skip {
		switch r.ftype {
		case spdySynStream, spdySynReply, spdyHeaders:
			// The zlib stream continues in the skipped block: header
			// blocks after it cannot be read.
			r.broken = true
		}
		return
	}
	r.controlFrame(r.buf)
	r.buf = r.buf[:0]
}

// flushData hands the buffered bytes of a data frame to its stream.
func (r *spdyReader) flushData() {
	if r.control || len(r.buf) == 0 {
		return
	}
	r.c.data(r.stream, r.buf, r.fromClient)
	r.buf = r.buf[:0]
}

func (r *spdyReader) controlFrame(p []byte) {
	switch r.ftype {
	case spdySynStream:
		if len(p) < 10 {
			return
		}
		id := binary.BigEndian.Uint32(p) & 0x7FFFFFFF
		h := r.headers(p[10:])
		if len(r.c.streams) < maxSPDYStreams {
			s := &spdyStream{typ: strings.ToLower(h["streamtype"]), port: h["port"]}
			switch s.typ {
			case "error":
				s.ctl = &control{kind: kindStatus}
			case "resize":
				s.ctl = &control{kind: kindResize}
			}
			r.c.streams[id] = s
		}
		if r.flags&spdyFlagFin != 0 {
			r.c.finish(id)
		}
	case spdySynReply, spdyHeaders:
		if len(p) < 4 {
			return
		}
		r.headers(p[4:])
		if r.flags&spdyFlagFin != 0 {
			r.c.finish(binary.BigEndian.Uint32(p) & 0x7FFFFFFF)
		}
	case spdyRstStream:
		if len(p) < 4 {
			return
		}
		id := binary.BigEndian.Uint32(p) & 0x7FFFFFFF
		r.c.finish(id)
		delete(r.c.streams, id)
	case spdySettings, spdyPing, spdyGoAway, spdyWindowUpdate:
		// Flow control and connection management: nothing recorded.
	}
}

// headers decompresses one header block and returns its pairs with
// lowercase names. Multiple values (NUL-separated) keep the first.
func (r *spdyReader) headers(block []byte) map[string]string {
	if r.broken {
		return nil
	}
	r.src.add(block)
	if r.z == nil {
		z, err := zlib.NewReaderDict(&r.src, spdyDictionary)
		if err != nil {
			r.broken = true
			return nil
		}
		r.z = z
	}
	h, err := readHeaderBlock(r.z)
	if err != nil {
		r.broken = true
		return nil
	}
	r.src.compact()
	return h
}

func readHeaderBlock(z io.Reader) (map[string]string, error) {
	var n [4]byte
	if _, err := io.ReadFull(z, n[:]); err != nil {
		return nil, err
	}
	count := binary.BigEndian.Uint32(n[:])
	if count > maxHeaderPairs {
		return nil, io.ErrUnexpectedEOF
	}
	h := make(map[string]string, count)
	total := 0
	for range count {
		var kv [2]string
		for i := range kv {
			if _, err := io.ReadFull(z, n[:]); err != nil {
				return nil, err
			}
			l := int(binary.BigEndian.Uint32(n[:]))
			total += l
			if l < 0 || total > maxControl {
				return nil, io.ErrUnexpectedEOF
			}
			b := make([]byte, l)
			if _, err := io.ReadFull(z, b); err != nil {
				return nil, err
			}
			kv[i] = string(b)
		}
		v, _, _ := strings.Cut(kv[1], "\x00")
		h[strings.ToLower(kv[0])] = v
	}
	return h, nil
}

// data routes the bytes of a data frame by their stream's type.
func (c *spdyConn) data(id uint32, p []byte, fromClient bool) {
	s := c.streams[id]
	if s == nil {
		c.d.send("", ChannelData, p)
		return
	}
	switch s.typ {
	case ChannelStdin, ChannelStdout, ChannelStderr:
		c.d.send("", s.typ, p)
	case "error", "resize":
		if s.port != "" {
			c.d.send(s.port, ChannelStderr, p)
			return
		}
		s.ctl.write(c.d, "", p)
	case "data":
		if fromClient {
			c.d.send(s.port, ChannelStdin, p)
		} else {
			c.d.send(s.port, ChannelStdout, p)
		}
	default:
		c.d.send(s.port, ChannelData, p)
	}
}

// finish ends a stream's pending control message (FIN or reset).
func (c *spdyConn) finish(id uint32) {
	if s := c.streams[id]; s != nil && s.ctl != nil {
		s.ctl.end(c.d, "")
	}
}

// feedReader is the zlib reader's source: the header block bytes seen so
// far and not yet consumed. It is an io.ByteReader, so flate reads from it
// directly and never reads ahead into a block that has not arrived.
type feedReader struct {
	b   []byte
	off int
}

func (f *feedReader) add(p []byte) { f.b = append(f.b, p...) }

func (f *feedReader) compact() {
	f.b = append(f.b[:0], f.b[f.off:]...)
	f.off = 0
	if cap(f.b) > maxControl {
		f.b = append([]byte(nil), f.b...)
	}
}

// Read implements io.Reader.
func (f *feedReader) Read(p []byte) (int, error) {
	if f.off >= len(f.b) {
		return 0, io.EOF
	}
	n := copy(p, f.b[f.off:])
	f.off += n
	return n, nil
}

// ReadByte implements io.ByteReader.
func (f *feedReader) ReadByte() (byte, error) {
	if f.off >= len(f.b) {
		return 0, io.EOF
	}
	c := f.b[f.off]
	f.off++
	return c, nil
}
