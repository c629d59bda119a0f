package publish

import (
	"sync"
	"time"

	"github.com/chaperone-dev/chaperone/sidecar/spool"
)

// maxKeptPositions bounds the position buffer an empty window keeps for
// reuse, so that one burst does not pin its memory.
const maxKeptPositions = 16 << 10

// flight is the window of messages sent and not yet acknowledged, in send
// order, shared by the sender and the ack handler. A message carries one
// spool record or a batch of event records; its entry names them by a run
// of positions in pos, which holds the window's positions in send order.
type flight struct {
	mu    sync.Mutex
	ring  []sent
	head  int    // index of the oldest
	count int    // messages in the window
	base  uint64 // id of the oldest; ids below it are from an earlier epoch
	bytes int    // data bytes of the messages in the window
	acked int64  // acknowledgements in this epoch
	err   error  // first refusal JetStream answered with in this epoch
	wake  chan struct{}

	// pos[posHead:] are the positions of the window's messages; posBase
	// numbers pos[posHead] within the epoch, the origin of sent.first.
	pos     []spool.Pos
	posHead int
	posBase uint64
}

type sent struct {
	first uint64 // number of its first position (see flight.pos)
	n     int    // records
	size  int    // data bytes
	at    time.Time
	acked bool
}

func newFlight(size int) *flight {
	return &flight{ring: make([]sent, size), wake: make(chan struct{}, 1)}
}

func (f *flight) signal() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// reset starts an epoch: the window is emptied, and answers to what it
// held are ignored from now on (the spool resends those records).
func (f *flight) reset(next uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.head, f.count, f.base, f.bytes, f.acked, f.err = 0, 0, next, 0, 0, nil
	f.pos, f.posHead, f.posBase = f.pos[:0], 0, 0
}

// add appends the message with the given id (always base+count), which
// carries the records at ps (copied) and size bytes of data.
func (f *flight) add(ps []spool.Pos, size int, at time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	first := f.posBase + uint64(len(f.pos)-f.posHead)
	f.pos = append(f.pos, ps...)
	f.ring[(f.head+f.count)%len(f.ring)] = sent{first: first, n: len(ps), size: size, at: at}
	f.count++
	f.bytes += size
}

// settle drops acknowledged messages off the front. It returns how many
// stay, their bytes, when the oldest was sent, and the epoch's first
// refusal.
func (f *flight) settle() (count, bytes int, oldest time.Time, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.count > 0 && f.ring[f.head].acked {
		s := f.ring[f.head]
		f.ring[f.head] = sent{}
		f.head = (f.head + 1) % len(f.ring)
		f.count--
		f.base++
		f.bytes -= s.size
		f.dropPositionsLocked(s.n)
	}
	if f.count > 0 {
		oldest = f.ring[f.head].at
	}
	return f.count, f.bytes, oldest, f.err
}

// dropPositionsLocked forgets the oldest n positions.
func (f *flight) dropPositionsLocked(n int) {
	f.posHead += n
	f.posBase += uint64(n)
	switch {
	case f.posHead == len(f.pos):
		if cap(f.pos) > maxKeptPositions {
			f.pos = nil
		}
		f.pos, f.posHead = f.pos[:0], 0
	case f.posHead >= 1024 && 2*f.posHead >= len(f.pos):
		f.pos = f.pos[:copy(f.pos, f.pos[f.posHead:])]
		f.posHead = 0
	}
}

// answer records JetStream's answer for id. If the answer is a current
// acknowledgement, it appends the positions of the message's records to
// dst, for the caller to acknowledge in the spool, and returns true.
func (f *flight) answer(id uint64, err error, dst []spool.Pos) ([]spool.Pos, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id < f.base || id >= f.base+uint64(f.count) {
		return dst, false // an earlier epoch's: its records are resent
	}
	s := &f.ring[(f.head+int(id-f.base))%len(f.ring)]
	if s.acked {
		return dst, false
	}
	if err != nil {
		if f.err == nil {
			f.err = err
		}
		return dst, false
	}
	s.acked = true
	f.acked++
	i := f.posHead + int(s.first-f.posBase)
	return append(dst, f.pos[i:i+s.n]...), true
}
