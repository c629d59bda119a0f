package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SyncMode says when a spool fsyncs what it appended.
type SyncMode int

const (
	// SyncPeriodic fsyncs the active segment every Options.SyncInterval
	// when something was appended. It is the default.
	SyncPeriodic SyncMode = iota
	// SyncNone leaves writing back to the kernel: records survive a crash of
	// the process but not of the machine.
	SyncNone
	// SyncAlways fsyncs after every Append.
	SyncAlways
)

// Defaults for Options.
const (
	DefaultSegmentBytes = 8 << 20
	DefaultMaxBytes     = 256 << 20
	DefaultSyncInterval = 200 * time.Millisecond
	minSegmentBytes     = 4 << 10
)

// ErrLocked means another spool has the directory open.
var ErrLocked = errors.New("spool directory locked")

// Log keys.
const (
	keyDir     = "dir"
	keySegment = "segment"
	keyOffset  = "offset"
	keyDropped = "dropped_bytes"
	keyErr     = "err"
	keyRecords = "records"
	keyBytes   = "bytes"
)

const segmentExt = ".seg"

// Options configure a Spool. Zero values take the defaults.
type Options struct {
	// SegmentBytes is the size at which a new segment file is started
	// (default 8 MiB). It is capped at a quarter of MaxBytes, so that a
	// fully acknowledged spool always has room.
	SegmentBytes int64
	// MaxBytes bounds the bytes on disk (default 256 MiB). Append returns
	// ErrFull rather than exceed it.
	MaxBytes int64
	// Sync is the fsync policy (default SyncPeriodic).
	Sync SyncMode
	// SyncInterval is the period of SyncPeriodic and of checkpoint writes
	// (default 200ms).
	SyncInterval time.Duration
	// Logger receives recoveries and I/O trouble; nil discards.
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	o.SegmentBytes = max(min(o.SegmentBytes, o.MaxBytes/4), minSegmentBytes)
	if o.SyncInterval <= 0 {
		o.SyncInterval = DefaultSyncInterval
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Pos names one record of a spool: its global byte offset and framed
// length. Offsets grow across segments and restarts.
type Pos struct {
	off uint64
	n   uint32
}

// Offset is the record's global byte offset.
func (p Pos) Offset() uint64 { return p.off }

// End is the offset just past the record.
func (p Pos) End() uint64 { return p.off + uint64(p.n) }

type segment struct {
	base uint64
	size uint64
	// f is the append handle; only the active (last) segment has one.
	f *os.File
}

// Spool is an append-only, segmented log of messages on disk. It is safe
// for concurrent use.
type Spool struct {
	dir  string
	opts Options
	log  *slog.Logger
	lock *os.File

	mu   sync.Mutex
	segs []*segment // ascending base; the last one is active
	// acked is the watermark: every record below it is acknowledged.
	acked uint64
	// pending holds acknowledgements above the watermark: start -> end.
	pending map[uint64]uint64
	bytes   int64 // on disk, in live segments
	records int64 // at or above the watermark
	lastSeq map[string]uint64
	gen     uint64 // bumps when acked or lastSeq change
	dirty   bool   // appended since the last fsync
	full    bool   // an Append was refused for space
	werr    error  // last write error, cleared by success or freed space
	broken  error  // a segment could not be repaired; appends are refused
	closed  bool
	buf     []byte

	// tail keeps copies of the latest records until they are
	// acknowledged, within tailMaxBytes, so that a reader keeping up with
	// the writer (the publisher's sender) takes them from memory instead of
	// reading them back and decoding them. The disk stays the record: a
	// reader falls back to it for anything not here.
	tail      []tailRec // ascending offsets; tail[tailHead:] are live
	tailHead  int
	tailBytes int

	ckptMu    sync.Mutex
	ckptSaved uint64

	stop chan struct{}
	done chan struct{}
}

// Open opens or creates the spool in dir. Torn or corrupt records found at
// the end of a segment are cut off and logged; Open never fails for them.
func Open(dir string, opts Options) (*Spool, error) {
	opts.setDefaults()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open spool %s: %w", dir, err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, fmt.Errorf("open spool %s: %w", dir, err)
	}
	s := &Spool{
		dir:     dir,
		opts:    opts,
		log:     opts.Logger.With(keyDir, dir),
		lock:    lock,
		pending: map[uint64]uint64{},
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	if err := s.load(); err != nil {
		_ = lock.Close()
		return nil, fmt.Errorf("open spool %s: %w", dir, err)
	}
	go s.loop()
	return s, nil
}

// load reads the checkpoint and scans every segment.
func (s *Spool) load() error {
	ckpt, err := readCheckpoint(s.dir)
	if err != nil {
		s.log.Warn("spool checkpoint unreadable, resending from the oldest record", keyErr, err)
	}
	s.lastSeq = ckpt.seqs
	bases, err := s.listSegments()
	if err != nil {
		return err
	}
	acked := ckpt.acked
	for _, base := range bases {
		sg, err := s.scan(base, ckpt.acked, &acked)
		if err != nil {
			return err
		}
		s.segs = append(s.segs, sg)
	}
	// Drop segments that are empty or fully acknowledged, keeping the last.
	for len(s.segs) > 1 && (s.segs[0].size == 0 || s.segs[0].base+s.segs[0].size <= acked) {
		if err := os.Remove(s.segPath(s.segs[0].base)); err != nil {
			return fmt.Errorf("remove acknowledged segment: %w", err)
		}
		s.segs = s.segs[1:]
	}
	if len(s.segs) == 0 {
		f, err := s.createSegment(acked)
		if err != nil {
			return err
		}
		s.segs = []*segment{{base: acked, f: f}}
	} else {
		act := s.segs[len(s.segs)-1]
		f, err := os.OpenFile(s.segPath(act.base), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return fmt.Errorf("open active segment: %w", err)
		}
		act.f = f
	}
	first, last := s.segs[0], s.segs[len(s.segs)-1]
	s.acked = min(max(acked, first.base), last.base+last.size)
	s.normalizeLocked()
	for _, sg := range s.segs {
		s.bytes += int64(sg.size)
	}
	s.gen = 1
	if s.records > 0 {
		s.log.Info("spool holds unacknowledged records from a previous run", keyRecords, s.records, keyBytes, s.bytes)
	}
	return nil
}

func (s *Spool) listSegments() ([]uint64, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("list segments: %w", err)
	}
	var bases []uint64
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), segmentExt)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		base, err := strconv.ParseUint(name, 10, 64)
		if err != nil {
			continue
		}
		bases = append(bases, base)
	}
	slices.Sort(bases)
	return bases, nil
}

// scan validates the segment at base, truncating it at the first bad
// record. It counts records past ckptAcked, records producer sequences, and
// moves *acked back to a record boundary if it points inside a record.
func (s *Spool) scan(base, ckptAcked uint64, acked *uint64) (*segment, error) {
	path := s.segPath(base)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read segment: %w", err)
	}
	off := 0
	for off < len(data) {
		n, seq, subj, err := checkFrame(data[off:])
		if err != nil {
			s.log.Warn("spool segment has a torn or corrupt record, truncating it",
				keySegment, filepath.Base(path), keyOffset, off, keyDropped, len(data)-off, keyErr, err)
			if err := os.Truncate(path, int64(off)); err != nil {
				return nil, fmt.Errorf("truncate segment: %w", err)
			}
			break
		}
		start, end := base+uint64(off), base+uint64(off+n)
		if start < *acked && *acked < end {
			*acked = start
		}
		if end > ckptAcked {
			s.records++
		}
		if seq > s.lastSeq[string(subj)] {
			s.lastSeq[string(subj)] = seq
		}
		off += n
	}
	return &segment{base: base, size: uint64(off)}, nil
}

func (s *Spool) segPath(base uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%020d%s", base, segmentExt))
}

func (s *Spool) createSegment(base uint64) (*os.File, error) {
	f, err := os.OpenFile(s.segPath(base), os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create segment: %w", err)
	}
	if s.opts.Sync != SyncNone {
		if d, err := os.Open(s.dir); err == nil {
			_ = d.Sync()
			_ = d.Close()
		}
	}
	return f, nil
}

// Append writes m at the end of the spool. It returns ErrFull (wrapped)
// when the spool would exceed MaxBytes, ErrTooLarge for a message that
// cannot be a record, and a wrapped I/O error when the disk refuses the
// write; in every error case nothing was appended.
func (s *Spool) Append(m Message) (Pos, error) {
	n, err := recordLen(&m)
	if err != nil {
		return Pos{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return Pos{}, ErrClosed
	case s.broken != nil:
		return Pos{}, s.broken
	case s.bytes+int64(n) > s.opts.MaxBytes:
		s.full = true
		return Pos{}, fmt.Errorf("%w: %d of %d bytes used, record of %d", ErrFull, s.bytes, s.opts.MaxBytes, n)
	}
	act := s.segs[len(s.segs)-1]
	if act.size > 0 && int64(act.size)+int64(n) > s.opts.SegmentBytes {
		if err := s.rollLocked(); err != nil {
			s.werr = fmt.Errorf("spool %s: %w", s.dir, err)
			return Pos{}, s.werr
		}
		act = s.segs[len(s.segs)-1]
	}
	s.buf = appendRecord(s.buf[:0], &m)
	_, err = act.f.Write(s.buf)
	if err == nil && s.opts.Sync == SyncAlways {
		err = act.f.Sync()
	}
	if cap(s.buf) > 1<<20 {
		s.buf = nil
	}
	if err != nil {
		// Take back whatever part of the record reached the file, so the
		// segment stays a sequence of whole records.
		if terr := act.f.Truncate(int64(act.size)); terr != nil {
			s.broken = fmt.Errorf("spool %s unusable: undo partial write: %w", s.dir, terr)
			s.log.Error("spool segment could not be repaired; refusing appends", keyErr, s.broken)
			return Pos{}, s.broken
		}
		s.werr = fmt.Errorf("append to spool %s: %w", s.dir, err)
		return Pos{}, s.werr
	}
	p := Pos{off: act.base + act.size, n: uint32(n)}
	s.keepTailLocked(p, &m)
	act.size += uint64(n)
	s.bytes += int64(n)
	s.records++
	s.dirty = true
	s.werr = nil
	if m.Seq > 0 && m.Seq > s.lastSeq[m.Subject] {
		s.lastSeq[m.Subject] = m.Seq
		s.gen++
	}
	return p, nil
}

// rollLocked seals the active segment and starts a new one after it.
func (s *Spool) rollLocked() error {
	act := s.segs[len(s.segs)-1]
	if s.opts.Sync != SyncNone {
		if err := act.f.Sync(); err != nil {
			return fmt.Errorf("sync segment: %w", err)
		}
	}
	base := act.base + act.size
	f, err := s.createSegment(base)
	if err != nil {
		return err
	}
	if err := act.f.Close(); err != nil {
		s.log.Warn("close sealed segment", keySegment, act.base, keyErr, err)
	}
	act.f = nil
	s.segs = append(s.segs, &segment{base: base, f: f})
	return nil
}

// Ack marks the records at ps acknowledged. Acknowledgements may come in
// any order and more than once. Segments whose records are all
// acknowledged are deleted. A batch's records are acknowledged in one
// call: one lock, one pass over the segments.
func (s *Spool) Ack(ps ...Pos) {
	s.mu.Lock()
	moved := false
	for _, p := range ps {
		if s.closed {
			break
		}
		if s.ackLocked(p) {
			moved = true
		}
	}
	if !moved {
		s.mu.Unlock()
		return
	}
	s.dropTailLocked(s.acked)
	s.gen++
	// Everything is acknowledged: recycle a large active segment, or any
	// when space is short, so its bytes leave the disk. (Small ones stay,
	// so a spool that keeps up does not create a file per record.)
	act := s.segs[len(s.segs)-1]
	if s.acked == act.base+act.size && act.size > 0 &&
		(s.werr != nil || s.full || int64(act.size) >= s.opts.SegmentBytes/2) {
		if err := s.rollLocked(); err != nil {
			s.log.Warn("recycle acknowledged segment", keyErr, err)
		}
	}
	var gone []*segment
	for len(s.segs) > 1 && s.segs[0].base+s.segs[0].size <= s.acked {
		gone = append(gone, s.segs[0])
		s.bytes -= int64(s.segs[0].size)
		s.segs = s.segs[1:]
	}
	var ckpt checkpoint
	if len(gone) > 0 {
		s.werr = nil
		ckpt = s.snapshotLocked()
	}
	s.mu.Unlock()
	if len(gone) == 0 {
		return
	}
	// The checkpoint goes first: it must not lag behind the deletion, or a
	// restart would lose the producer sequences the deleted records held.
	if err := s.saveCheckpoint(ckpt); err != nil {
		s.log.Warn("spool checkpoint", keyErr, err)
	}
	for _, sg := range gone {
		if err := os.Remove(s.segPath(sg.base)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("remove acknowledged segment", keySegment, sg.base, keyErr, err)
		}
	}
}

// ackLocked marks p acknowledged and reports whether the watermark moved:
// an acknowledgement past the watermark waits in pending for the records
// before it.
func (s *Spool) ackLocked(p Pos) bool {
	if p.off < s.acked {
		return false
	}
	if p.off > s.acked {
		s.pending[p.off] = p.End()
		return false
	}
	delete(s.pending, p.off)
	s.acked = p.End()
	s.records--
	s.normalizeLocked()
	for {
		end, ok := s.pending[s.acked]
		if !ok {
			break
		}
		delete(s.pending, s.acked)
		s.acked = end
		s.records--
		s.normalizeLocked()
	}
	return true
}

// normalizeLocked moves the watermark over a gap between segments (left by
// a segment truncated on Open).
func (s *Spool) normalizeLocked() {
	for _, sg := range s.segs {
		if s.acked < sg.base {
			s.acked = sg.base
			return
		}
		if s.acked < sg.base+sg.size {
			return
		}
	}
}

func (s *Spool) snapshotLocked() checkpoint {
	return checkpoint{gen: s.gen, acked: s.acked, seqs: maps.Clone(s.lastSeq)}
}

// Usage returns the bytes on disk and the number of records not yet
// acknowledged (records acknowledged out of order count until the
// watermark passes them).
func (s *Spool) Usage() (bytes, records int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes, s.records
}

// MaxBytes is the spool's size limit.
func (s *Spool) MaxBytes() int64 { return s.opts.MaxBytes }

// Dir is the spool's directory.
func (s *Spool) Dir() string { return s.dir }

// LastSeq returns the highest producer sequence ever appended for subject,
// including by earlier runs on the same directory.
func (s *Spool) LastSeq(subject string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastSeq[subject]
}

// Check reports whether appends can be expected to succeed: nil while the
// spool is writable and has headroom below MaxBytes. After an Append was
// refused for space, Check keeps reporting ErrFull until usage fell to half
// of MaxBytes, so that callers do not flap at the limit.
func (s *Spool) Check() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return ErrClosed
	case s.broken != nil:
		return s.broken
	case s.werr != nil:
		return s.werr
	}
	if s.full && s.bytes <= s.opts.MaxBytes/2 {
		s.full = false
	}
	headroom := min(s.opts.MaxBytes/16, 1<<20)
	if s.full || s.bytes+headroom > s.opts.MaxBytes {
		return fmt.Errorf("%w: %d of %d bytes used", ErrFull, s.bytes, s.opts.MaxBytes)
	}
	return nil
}

// loop fsyncs (SyncPeriodic) and writes the checkpoint periodically.
func (s *Spool) loop() {
	defer close(s.done)
	t := time.NewTicker(s.opts.SyncInterval)
	defer t.Stop()
	var saved uint64
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		var f *os.File
		if s.dirty && s.opts.Sync == SyncPeriodic {
			f = s.segs[len(s.segs)-1].f
		}
		s.dirty = false
		var ckpt checkpoint
		if s.gen != saved {
			ckpt = s.snapshotLocked()
			saved = s.gen
		}
		s.mu.Unlock()
		if f != nil {
			if err := f.Sync(); err != nil && !errors.Is(err, os.ErrClosed) {
				s.log.Warn("spool fsync", keyErr, err)
			}
		}
		if ckpt.gen != 0 {
			if err := s.saveCheckpoint(ckpt); err != nil {
				s.log.Warn("spool checkpoint", keyErr, err)
			}
		}
	}
}

// Close syncs the active segment, writes the checkpoint and releases the
// directory. Readers fail with ErrClosed afterwards.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.tail, s.tailHead, s.tailBytes = nil, 0, 0
	act := s.segs[len(s.segs)-1]
	ckpt := s.snapshotLocked()
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	var errs []error
	if s.opts.Sync != SyncNone {
		if err := act.f.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("sync segment: %w", err))
		}
	}
	if err := act.f.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close segment: %w", err))
	}
	ckpt.gen = max(ckpt.gen, 1)
	if err := s.saveCheckpoint(ckpt); err != nil {
		errs = append(errs, err)
	}
	if err := s.lock.Close(); err != nil {
		errs = append(errs, fmt.Errorf("unlock: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close spool %s: %w", s.dir, err)
	}
	return nil
}
