package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

const (
	checkpointName  = "checkpoint"
	checkpointMagic = "chspool1"
)

// checkpoint is what a restart needs beyond the segments: the acknowledged
// watermark and the highest producer sequence per subject. Values only grow,
// so gen orders snapshots.
type checkpoint struct {
	gen   uint64
	acked uint64
	seqs  map[string]uint64
}

// marshal encodes c: magic | u64 acked | u32 n | (u16 len subject | subject |
// u64 seq)* | u32 CRC32C of everything before.
func (c *checkpoint) marshal() []byte {
	keys := make([]string, 0, len(c.seqs))
	for k := range c.seqs {
		if len(k) <= maxField {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	b := append([]byte(nil), checkpointMagic...)
	b = binary.LittleEndian.AppendUint64(b, c.acked)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(keys)))
	for _, k := range keys {
		b = appendField(b, k)
		b = binary.LittleEndian.AppendUint64(b, c.seqs[k])
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

func unmarshalCheckpoint(b []byte) (checkpoint, error) {
	c := checkpoint{seqs: map[string]uint64{}}
	if len(b) < len(checkpointMagic)+8+4+4 || string(b[:len(checkpointMagic)]) != checkpointMagic {
		return c, fmt.Errorf("%w: bad checkpoint header", ErrCorrupt)
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, crcTable) != sum {
		return c, fmt.Errorf("%w: checkpoint checksum", ErrCorrupt)
	}
	body = body[len(checkpointMagic):]
	c.acked = binary.LittleEndian.Uint64(body)
	n := binary.LittleEndian.Uint32(body[8:])
	d := decoder{b: body[12:]}
	for range n {
		k := d.field()
		if d.err != nil || len(d.b) < 8 {
			return checkpoint{seqs: map[string]uint64{}}, fmt.Errorf("%w: checkpoint entries", ErrCorrupt)
		}
		c.seqs[k] = binary.LittleEndian.Uint64(d.b)
		d.b = d.b[8:]
	}
	return c, nil
}

// readCheckpoint returns the stored checkpoint; a missing one is empty.
func readCheckpoint(dir string) (checkpoint, error) {
	b, err := os.ReadFile(filepath.Join(dir, checkpointName))
	if errors.Is(err, fs.ErrNotExist) {
		return checkpoint{seqs: map[string]uint64{}}, nil
	}
	if err != nil {
		return checkpoint{seqs: map[string]uint64{}}, fmt.Errorf("read checkpoint: %w", err)
	}
	return unmarshalCheckpoint(b)
}

// saveCheckpoint writes c unless a newer snapshot was already written. It
// writes a temporary file and renames it, so a crash leaves the old or the
// new checkpoint, never a mix.
func (s *Spool) saveCheckpoint(c checkpoint) error {
	s.ckptMu.Lock()
	defer s.ckptMu.Unlock()
	if c.gen <= s.ckptSaved {
		return nil
	}
	tmp := filepath.Join(s.dir, checkpointName+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	_, err = f.Write(c.marshal())
	if err == nil && s.opts.Sync != SyncNone {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(s.dir, checkpointName))
	}
	if err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	s.ckptSaved = c.gen
	return nil
}
