package runner

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// stageSidecar puts a copy of the sidecar binary where the sidecar's UID
// can execute it. The binary usually sits in a checkout or a temporary
// directory that only root may enter (a home directory, a 0700 temp dir),
// and the sidecar does not run as root. A hard link is tried first; the
// returned func removes the staged copy.
func stageSidecar(path, session string) (string, func(), error) {
	dir := filepath.Join(os.TempDir(), "chaperone-run", session, "bin")
	//nolint:gosec // the staged binary must be executable by the sidecar's UID
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, fmt.Errorf("stage sidecar: %w", err)
	}
	staged := filepath.Join(dir, "chaperone-sidecar")
	clean := func() {
		_ = os.RemoveAll(dir)
		_ = os.Remove(filepath.Dir(dir)) // the run's dir, if now empty
	}
	_ = os.Remove(staged)
	if err := os.Link(path, staged); err == nil {
		if err := os.Chmod(staged, 0o755); err != nil { //nolint:gosec // must be executable by the sidecar's UID
			clean()
			return "", nil, fmt.Errorf("stage sidecar: %w", err)
		}
		return staged, clean, nil
	}
	if err := copyFile(path, staged); err != nil {
		clean()
		return "", nil, fmt.Errorf("stage sidecar: %w", err)
	}
	return staged, clean, nil
}

func copyFile(from, to string) (err error) {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755) //nolint:gosec // an executable for the sidecar's UID
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, out.Close()) }()
	_, err = io.Copy(out, in)
	return err
}
