//go:build !unix

package spool

import (
	"os"
	"path/filepath"
)

// lockDir only marks dir on systems without flock.
func lockDir(dir string) (*os.File, error) {
	return os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o600)
}
