package store

import "errors"

// Errors a backend returns for bad input. The API turns them into 400 Bad
// Request; check them with errors.Is.
var (
	// ErrBadCursor is returned by Sessions for a cursor it did not issue.
	ErrBadCursor = errors.New("bad cursor")
	// ErrBlobMismatch is returned by PutBlobs for a blob whose ref is not
	// the sha256 of its data.
	ErrBlobMismatch = errors.New("blob ref does not match its data")
)
