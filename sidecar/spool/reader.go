package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
)

// readChunk is how much a Reader reads ahead from a segment.
const readChunk = 256 << 10

// Reader reads a spool's records in order. It has its own file handles and
// reads only records whose Append completed, so it can run concurrently
// with appends and acks. A Reader is not safe for concurrent use.
type Reader struct {
	s   *Spool
	pos uint64

	f      *os.File
	fbase  uint64
	buf    []byte
	bufOff uint64 // global offset of buf[0]
}

// NewReader returns a reader positioned at the oldest unacknowledged
// record.
func (s *Spool) NewReader() *Reader {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &Reader{s: s, pos: s.acked}
}

// Next returns the next record and its position. It returns io.EOF when
// the reader has caught up with the writer; call it again after more
// appends. A reader that fell behind the acknowledged watermark skips ahead
// to it. The message may share memory with the spool: do not modify it.
func (r *Reader) Next() (Message, Pos, error) {
	for {
		base, limit, kept, ok, err := r.locate()
		if err != nil || !ok {
			if err == nil {
				err = io.EOF
			}
			return Message{}, Pos{}, err
		}
		if kept != nil {
			r.pos = kept.pos.End()
			return kept.m, kept.pos, nil
		}
		if r.f == nil || r.fbase != base {
			if err := r.open(base); err != nil {
				if errors.Is(err, fs.ErrNotExist) && r.behind() {
					continue // deleted after being acknowledged meanwhile
				}
				return Message{}, Pos{}, err
			}
		}
		avail := limit - r.pos
		if avail < frameHeaderLen {
			return Message{}, Pos{}, fmt.Errorf("%w: %d bytes left in segment %d at %d", ErrCorrupt, avail, base, r.pos)
		}
		if err := r.fill(base, frameHeaderLen, avail); err != nil {
			return Message{}, Pos{}, err
		}
		n := uint64(frameHeaderLen) + uint64(binary.LittleEndian.Uint32(r.buf[r.pos-r.bufOff:]))
		if n > avail {
			return Message{}, Pos{}, fmt.Errorf("%w: record of %d bytes at %d overruns segment %d", ErrCorrupt, n, r.pos, base)
		}
		if err := r.fill(base, n, avail); err != nil {
			return Message{}, Pos{}, err
		}
		m, _, err := DecodeRecord(r.buf[r.pos-r.bufOff : r.pos-r.bufOff+n])
		if err != nil {
			return Message{}, Pos{}, fmt.Errorf("spool record at %d: %w", r.pos, err)
		}
		p := Pos{off: r.pos, n: uint32(n)}
		r.pos += n
		return m, p, nil
	}
}

// locate finds the segment holding r.pos and the committed end of it,
// moving r.pos past acknowledged data and between segments; kept is the
// record at r.pos when the spool still has it in memory. ok is false when
// there is nothing to read yet.
func (r *Reader) locate() (base, limit uint64, kept *tailRec, ok bool, err error) {
	s := r.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, 0, nil, false, ErrClosed
	}
	if r.pos < s.segs[0].base {
		r.pos = max(s.acked, s.segs[0].base)
	}
	for {
		i := sort.Search(len(s.segs), func(i int) bool { return s.segs[i].base > r.pos }) - 1
		sg := s.segs[i]
		if r.pos < sg.base+sg.size {
			if t, ok := s.tailAtLocked(r.pos); ok {
				return sg.base, sg.base + sg.size, &t, true, nil
			}
			return sg.base, sg.base + sg.size, nil, true, nil
		}
		if i == len(s.segs)-1 {
			return 0, 0, nil, false, nil
		}
		// At the end of a sealed segment: continue in the next one.
		r.pos = s.segs[i+1].base
	}
}

func (r *Reader) behind() bool {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	return r.pos < r.s.acked
}

func (r *Reader) open(base uint64) error {
	if r.f != nil {
		_ = r.f.Close()
		r.f = nil
	}
	f, err := os.Open(r.s.segPath(base))
	if err != nil {
		return fmt.Errorf("open segment: %w", err)
	}
	r.f, r.fbase = f, base
	r.buf = r.buf[:0]
	return nil
}

// fill makes r.buf hold [r.pos, r.pos+need), reading ahead up to avail.
func (r *Reader) fill(base, need, avail uint64) error {
	if r.pos >= r.bufOff && r.pos+need <= r.bufOff+uint64(len(r.buf)) {
		return nil
	}
	l := min(max(need, readChunk), avail)
	if uint64(cap(r.buf)) < l || cap(r.buf) > 4*readChunk && l <= readChunk {
		r.buf = make([]byte, l)
	}
	r.buf = r.buf[:l]
	r.bufOff = r.pos
	got, err := r.f.ReadAt(r.buf, int64(r.pos-base))
	r.buf = r.buf[:got]
	if uint64(got) < need {
		r.buf = r.buf[:0]
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("read segment %d at %d: %w", base, r.pos, err)
	}
	return nil
}

// Close releases the reader's file handle.
func (r *Reader) Close() error {
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}
