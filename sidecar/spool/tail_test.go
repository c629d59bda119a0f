package spool

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

// readMsgs reads until the reader catches up.
func readMsgs(t *testing.T, r *Reader) ([]Message, []Pos) {
	t.Helper()
	var ms []Message
	var ps []Pos
	for {
		m, p, err := r.Next()
		if errors.Is(err, io.EOF) {
			return ms, ps
		}
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
		ps = append(ps, p)
	}
}

// TestTailMatchesDisk reads more records than the memory tail holds (so
// the reader starts on disk and ends in memory), with headers and a
// record too large to keep, and compares with what a spool reopened on
// the same directory (nothing in memory) reads from disk.
func TestTailMatchesDisk(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{SegmentBytes: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	const n = 1500 // 1500 × 1 KiB > tailMaxBytes
	for i := range n {
		m := msg(i, 1024)
		if i%7 == 0 {
			m.Header = map[string]string{"Chaperone-Blob-Ref": "sha256:x", "K": "v"}
		}
		if i == 700 {
			m.Data = bytes.Repeat([]byte("big"), tailMaxBytes/3) // not kept
		}
		if _, err := s.Append(m); err != nil {
			t.Fatal(err)
		}
		m.Data[0] ^= 0xff // the caller may reuse its buffer after Append
	}
	if s.tailBytes > tailMaxBytes || len(s.tail)-s.tailHead == 0 {
		t.Fatalf("tail holds %d bytes in %d records", s.tailBytes, len(s.tail)-s.tailHead)
	}
	r := s.NewReader()
	fromMem, memPos := readMsgs(t, r)
	r.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := open(t, dir, Options{SegmentBytes: 256 << 10})
	if len(s2.tail) != 0 {
		t.Fatal("a reopened spool has records in memory")
	}
	r2 := s2.NewReader()
	defer r2.Close()
	fromDisk, diskPos := readMsgs(t, r2)
	if len(fromMem) != n || len(fromDisk) != n {
		t.Fatalf("read %d and %d records, want %d", len(fromMem), len(fromDisk), n)
	}
	if !reflect.DeepEqual(memPos, diskPos) {
		t.Fatal("positions differ between memory and disk")
	}
	for i := range fromMem {
		if !reflect.DeepEqual(fromMem[i], fromDisk[i]) {
			t.Fatalf("record %d differs:\nmemory %+v\ndisk   %+v", i, fromMem[i], fromDisk[i])
		}
	}
}

// TestTailDropsAcked checks that acknowledged records leave memory.
func TestTailDropsAcked(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	ps := appendN(t, s, 1, 100, 100)
	for _, p := range ps[:60] {
		s.Ack(p)
	}
	if got := len(s.tail) - s.tailHead; got != 40 {
		t.Fatalf("%d records in memory after 60 of 100 acked, want 40", got)
	}
	for _, p := range ps[60:] {
		s.Ack(p)
	}
	if s.tailBytes != 0 || len(s.tail) != s.tailHead {
		t.Fatalf("memory holds %d bytes after every ack", s.tailBytes)
	}
}
