package spool

import (
	"maps"
	"sort"
)

// tailMaxBytes bounds the data the spool keeps in memory for its reader.
// While JetStream keeps up, only the records in flight are held; during an
// outage the newest ones, and the reader takes the older ones from disk.
const tailMaxBytes = 1 << 20

// tailRec is a record kept in memory: its position and a copy of it.
type tailRec struct {
	pos Pos
	m   Message
}

// keepTailLocked keeps a copy of the record just appended at p.
func (s *Spool) keepTailLocked(p Pos, m *Message) {
	if len(m.Data) > tailMaxBytes/4 {
		return // large records (blobs) are read back from disk
	}
	c := *m
	c.Data = append([]byte(nil), m.Data...)
	c.Header = maps.Clone(m.Header)
	s.tail = append(s.tail, tailRec{pos: p, m: c})
	s.tailBytes += len(c.Data)
	for s.tailBytes > tailMaxBytes {
		s.popTailLocked()
	}
}

// dropTailLocked forgets the records that end at or below acked.
func (s *Spool) dropTailLocked(acked uint64) {
	for s.tailHead < len(s.tail) && s.tail[s.tailHead].pos.End() <= acked {
		s.popTailLocked()
	}
}

func (s *Spool) popTailLocked() {
	s.tailBytes -= len(s.tail[s.tailHead].m.Data)
	s.tail[s.tailHead] = tailRec{}
	s.tailHead++
	switch {
	case s.tailHead == len(s.tail):
		s.tail, s.tailHead = s.tail[:0], 0
	case s.tailHead >= 64 && s.tailHead*2 >= len(s.tail):
		n := copy(s.tail, s.tail[s.tailHead:])
		clear(s.tail[n:])
		s.tail, s.tailHead = s.tail[:n], 0
	}
}

// tailAtLocked returns the kept record at offset off, if there is one.
func (s *Spool) tailAtLocked(off uint64) (tailRec, bool) {
	live := s.tail[s.tailHead:]
	i := sort.Search(len(live), func(i int) bool { return live[i].pos.off >= off })
	if i < len(live) && live[i].pos.off == off {
		return live[i], true
	}
	return tailRec{}, false
}
