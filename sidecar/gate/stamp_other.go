//go:build !unix

package gate

import "os"

func stampOf(fi os.FileInfo) fileStamp {
	return fileStamp{mod: fi.ModTime(), size: fi.Size()}
}
