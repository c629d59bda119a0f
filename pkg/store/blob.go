package store

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// BlobRefPrefix starts every blob ref.
const BlobRefPrefix = "sha256:"

// BlobRef returns the ref of data: "sha256:" and the lowercase hex of its
// SHA-256.
func BlobRef(data []byte) string {
	sum := sha256.Sum256(data)
	return BlobRefPrefix + hex.EncodeToString(sum[:])
}

// CheckBlob returns an error wrapping ErrBlobMismatch unless b.Ref is
// BlobRef(b.Data).
func CheckBlob(b Blob) error {
	if want := BlobRef(b.Data); b.Ref != want {
		return fmt.Errorf("%w: ref %q, data (%d bytes) hashes to %s", ErrBlobMismatch, b.Ref, len(b.Data), want)
	}
	return nil
}
