package spool

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
)

const subj = "chaperone.events.s1"

func open(t *testing.T, dir string, opts Options) *Spool {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func msg(i int, size int) Message {
	return Message{
		Subject: subj,
		MsgID:   fmt.Sprintf("id-%06d", i),
		Data:    bytes.Repeat([]byte{byte(i)}, size),
		Seq:     uint64(i),
	}
}

func appendN(t *testing.T, s *Spool, from, n, size int) []Pos {
	t.Helper()
	var ps []Pos
	for i := from; i < from+n; i++ {
		p, err := s.Append(msg(i, size))
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		ps = append(ps, p)
	}
	return ps
}

// readAll reads until the reader catches up and returns the MsgIDs.
func readAll(t *testing.T, r *Reader) ([]string, []Pos) {
	t.Helper()
	var ids []string
	var ps []Pos
	for {
		m, p, err := r.Next()
		if errors.Is(err, io.EOF) {
			return ids, ps
		}
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.MsgID)
		ps = append(ps, p)
	}
}

func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+segmentExt))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func wantIDs(t *testing.T, got []string, from, to int) {
	t.Helper()
	if len(got) != to-from {
		t.Fatalf("read %d records, want %d (%d..%d)", len(got), to-from, from, to-1)
	}
	for i, id := range got {
		if want := fmt.Sprintf("id-%06d", from+i); id != want {
			t.Fatalf("record %d is %s, want %s", i, id, want)
		}
	}
}

func TestAppendReadAckAcrossSegments(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{SegmentBytes: 8 << 10, MaxBytes: 1 << 20})
	ps := appendN(t, s, 0, 100, 500)
	if n := len(segFiles(t, dir)); n < 5 {
		t.Fatalf("%d segments, want several", n)
	}
	r := s.NewReader()
	defer r.Close()
	ids, rps := readAll(t, r)
	wantIDs(t, ids, 0, 100)
	for i := range ps {
		if ps[i] != rps[i] {
			t.Fatalf("record %d: append pos %v, read pos %v", i, ps[i], rps[i])
		}
	}
	// Acknowledge out of order: odd ones first, then even ones backwards.
	for i := 1; i < len(ps); i += 2 {
		s.Ack(ps[i])
	}
	if _, recs := s.Usage(); recs != 100 {
		t.Fatalf("records %d after out-of-order acks, want 100 (watermark has not moved)", recs)
	}
	for i := len(ps) - 2; i >= 0; i -= 2 {
		s.Ack(ps[i])
	}
	bytes, recs := s.Usage()
	if recs != 0 {
		t.Fatalf("records %d after all acks, want 0", recs)
	}
	if n := len(segFiles(t, dir)); n != 1 {
		t.Fatalf("%d segments left, want only the active one", n)
	}
	if bytes > 8<<10 {
		t.Fatalf("%d bytes on disk, want at most one segment", bytes)
	}
	// Appends after a full drain are read by the same reader.
	appendN(t, s, 100, 3, 10)
	ids, _ = readAll(t, r)
	wantIDs(t, ids, 100, 103)
}

func TestReopenResendsOnlyUnacked(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{SegmentBytes: 4 << 10, MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	ps := appendN(t, s, 1, 60, 300)
	for _, p := range ps[:40] {
		s.Ack(p)
	}
	s.Ack(ps[50]) // out of order: not persisted, resent after restart
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, Options{SegmentBytes: 4 << 10, MaxBytes: 1 << 20})
	if _, recs := s.Usage(); recs != 20 {
		t.Fatalf("%d records after reopen, want 20", recs)
	}
	if got := s.LastSeq(subj); got != 60 {
		t.Fatalf("LastSeq %d, want 60", got)
	}
	r := s.NewReader()
	defer r.Close()
	ids, _ := readAll(t, r)
	wantIDs(t, ids, 41, 61)
}

func TestLastSeqSurvivesDrain(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 4 << 10, MaxBytes: 1 << 20}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range appendN(t, s, 1, 50, 400) {
		s.Ack(p)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, opts)
	if got := s.LastSeq(subj); got != 50 {
		t.Fatalf("LastSeq %d, want 50", got)
	}
	if got := s.LastSeq("chaperone.events.other"); got != 0 {
		t.Fatalf("LastSeq of another subject %d, want 0", got)
	}
	if _, recs := s.Usage(); recs != 0 {
		t.Fatalf("%d records, want 0", recs)
	}
}

func TestTornTail(t *testing.T) {
	const recSize = frameHeaderLen + minBodyLen + len(subj) + len("id-000000") + 100
	tests := []struct {
		name    string
		damage  func(data []byte) []byte
		wantRec int
	}{
		{"cut mid record", func(b []byte) []byte { return b[:len(b)-7] }, 9},
		{"cut mid header", func(b []byte) []byte { return b[:len(b)-recSize+3] }, 9},
		{"garbage appended", func(b []byte) []byte { return append(b, 1, 2, 3, 4, 5, 6, 7, 8, 9) }, 10},
		{"zeros appended", func(b []byte) []byte { return append(b, make([]byte, 4096)...) }, 10},
		{"flipped bit in record 5", func(b []byte) []byte { b[5*recSize+20] ^= 1; return b }, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			appendN(t, s, 0, 10, 100)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			seg := segFiles(t, dir)[0]
			data, err := os.ReadFile(seg)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(seg, tt.damage(data), 0o600); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			s = open(t, dir, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if _, recs := s.Usage(); recs != int64(tt.wantRec) {
				t.Fatalf("%d records, want %d", recs, tt.wantRec)
			}
			if tt.wantRec < 10 || strings.Contains(tt.name, "appended") {
				if !strings.Contains(logs.String(), "truncating") {
					t.Errorf("no truncation logged: %s", logs.String())
				}
			}
			appendN(t, s, 100, 1, 10)
			r := s.NewReader()
			defer r.Close()
			ids, _ := readAll(t, r)
			wantIDs(t, ids[:tt.wantRec], 0, tt.wantRec)
			if ids[len(ids)-1] != "id-000100" || len(ids) != tt.wantRec+1 {
				t.Fatalf("read %v after repair", ids)
			}
		})
	}
}

func TestFullAndCheck(t *testing.T) {
	s := open(t, t.TempDir(), Options{MaxBytes: 64 << 10, SegmentBytes: 4 << 10})
	if err := s.Check(); err != nil {
		t.Fatalf("Check on empty spool: %v", err)
	}
	var ps []Pos
	for i := 0; ; i++ {
		p, err := s.Append(msg(i, 1000))
		if errors.Is(err, ErrFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
		if i > 1000 {
			t.Fatal("spool never filled")
		}
	}
	if b, _ := s.Usage(); b > 64<<10 {
		t.Fatalf("%d bytes on disk, over MaxBytes", b)
	}
	if err := s.Check(); !errors.Is(err, ErrFull) {
		t.Fatalf("Check %v, want ErrFull", err)
	}
	// Freeing a little is not enough (hysteresis), half is.
	for _, p := range ps[:len(ps)/4] {
		s.Ack(p)
	}
	if err := s.Check(); !errors.Is(err, ErrFull) {
		t.Fatalf("Check after small drain %v, want ErrFull", err)
	}
	for _, p := range ps {
		s.Ack(p)
	}
	if err := s.Check(); err != nil {
		t.Fatalf("Check after drain: %v", err)
	}
	if _, err := s.Append(msg(0, 1000)); err != nil {
		t.Fatal(err)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(file, Options{})
	if !errors.Is(err, syscall.ENOTDIR) {
		t.Fatalf("Open on a file: %v, want ENOTDIR", err)
	}
	if !strings.Contains(err.Error(), file) {
		t.Fatalf("error %q does not name the path", err)
	}
	_ = s
}

// TestDiskFull fills a real, tiny tmpfs: the write fails with ENOSPC even
// for root, the partial record is taken back, and the spool recovers once
// acknowledged segments free space.
func TestDiskFull(t *testing.T) {
	dir := mountTmpfs(t, 64<<10)
	s := open(t, filepath.Join(dir, "spool"), Options{MaxBytes: 1 << 20, SegmentBytes: 8 << 10, Sync: SyncAlways})
	var ps []Pos
	var werr error
	for i := range 1000 {
		p, err := s.Append(msg(i, 1500))
		if err != nil {
			werr = err
			break
		}
		ps = append(ps, p)
	}
	if !errors.Is(werr, syscall.ENOSPC) {
		t.Fatalf("append error %v, want ENOSPC", werr)
	}
	if err := s.Check(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Check %v, want ENOSPC", err)
	}
	r := s.NewReader()
	defer r.Close()
	ids, _ := readAll(t, r)
	wantIDs(t, ids, 0, len(ps))
	for _, p := range ps {
		s.Ack(p)
	}
	if err := s.Check(); err != nil {
		t.Fatalf("Check after freeing space: %v", err)
	}
	appendN(t, s, 5000, 3, 1500)
	ids, _ = readAll(t, r)
	wantIDs(t, ids, 5000, 5003)
}

func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("SKIP (needs root with mount rights): mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

func TestConcurrentAppendReadAck(t *testing.T) {
	s := open(t, t.TempDir(), Options{SegmentBytes: 16 << 10, MaxBytes: 64 << 20, Sync: SyncNone})
	const n = 5000
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range n {
			if _, err := s.Append(msg(i, 200)); err != nil {
				t.Error(err)
				return
			}
		}
	})
	r := s.NewReader()
	defer r.Close()
	seen := 0
	for seen < n {
		m, p, err := r.Next()
		if errors.Is(err, io.EOF) {
			runtime.Gosched()
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("id-%06d", seen); m.MsgID != want {
			t.Fatalf("read %s, want %s", m.MsgID, want)
		}
		s.Ack(p)
		seen++
	}
	wg.Wait()
	if _, recs := s.Usage(); recs != 0 {
		t.Fatalf("%d records left", recs)
	}
}

func BenchmarkAppend(b *testing.B) {
	s, err := Open(b.TempDir(), Options{Sync: SyncPeriodic})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	m := msg(1, 1024)
	b.SetBytes(1024)
	b.ReportAllocs()
	for b.Loop() {
		p, err := s.Append(m)
		if err != nil {
			b.Fatal(err)
		}
		s.Ack(p)
	}
}
