//go:build unix

package gate

import (
	"os"
	"syscall"
)

func stampOf(fi os.FileInfo) fileStamp {
	s := fileStamp{mod: fi.ModTime(), size: fi.Size()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.ino = uint64(st.Ino) //nolint:unconvert // int64 on some platforms
	}
	return s
}
