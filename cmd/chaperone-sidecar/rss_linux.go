package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// trimExecutable drops the sidecar's own read-only executable pages from
// its resident set and asks the kernel to fault them back one page at a
// time. At start the kernel maps code and data around every fault (fault-
// around and read-ahead), so nearly the whole binary counts as resident
// although an idle proxy runs a small part of it. The pages stay in the
// page cache: only this process's mappings of them go. Mappings that are
// writable or hold copied-on-write pages (Anonymous in smaps) are left
// alone, so no content can be lost. It returns the bytes unmapped.
func trimExecutable() (int64, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("trim executable: %w", err)
	}
	data, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return 0, fmt.Errorf("trim executable: %w", err)
	}
	var trimmed int64
	for _, m := range parseSmaps(data) {
		if m.path != exe || strings.Contains(m.perms, "w") || m.anon != 0 || m.rss == 0 {
			continue
		}
		if err := madvise(m, unix.MADV_RANDOM); err != nil {
			return trimmed, fmt.Errorf("trim executable: madvise random: %w", err)
		}
		if err := madvise(m, unix.MADV_DONTNEED); err != nil {
			return trimmed, fmt.Errorf("trim executable: madvise dontneed: %w", err)
		}
		trimmed += m.rss
	}
	return trimmed, nil
}

// mapping is one entry of /proc/self/smaps.
type mapping struct {
	start, end  uintptr
	perms, path string
	rss         int64
	anon        int64
}

// madvise gives advice about the whole of m. The address comes from
// /proc/self/smaps and is passed to the kernel as a number, never used as
// a Go pointer.
func madvise(m mapping, advice int) error {
	_, _, errno := unix.Syscall(unix.SYS_MADVISE, m.start, m.end-m.start, uintptr(advice))
	if errno != 0 {
		return errno
	}
	return nil
}

// parseSmaps reads the address range, permissions, path, Rss and
// Anonymous (copied-on-write) bytes of each mapping.
func parseSmaps(data []byte) []mapping {
	var out []mapping
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if lo, hi, ok := strings.Cut(f[0], "-"); ok && len(f) >= 5 {
			s, err1 := strconv.ParseUint(lo, 16, 64)
			e, err2 := strconv.ParseUint(hi, 16, 64)
			if err1 == nil && err2 == nil {
				m := mapping{start: uintptr(s), end: uintptr(e), perms: f[1]}
				if len(f) >= 6 {
					m.path = strings.Join(f[5:], " ")
				}
				out = append(out, m)
				continue
			}
		}
		if len(out) == 0 || len(f) < 2 {
			continue
		}
		kb, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "Rss:":
			out[len(out)-1].rss = kb << 10
		case "Anonymous:":
			out[len(out)-1].anon = kb << 10
		}
	}
	return out
}
