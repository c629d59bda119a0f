package store

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

// cursorVersion prefixes every cursor, so the format can change without
// misreading old cursors.
const cursorVersion = "1"

// Cursor is the keyset position of a Sessions page: the sort key (start time,
// session id) of the last session returned. The next page holds the sessions
// that sort after it (older, or equally old with a smaller id).
type Cursor struct {
	Started time.Time
	ID      string
}

// String encodes c as the opaque text handed to clients.
func (c Cursor) String() string {
	raw := cursorVersion + ":" + strconv.FormatInt(UnixNano(c.Started), 10) + ":" + c.ID
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// ParseCursor decodes a cursor made by Cursor.String. Any other text gives
// an error wrapping ErrBadCursor.
func ParseCursor(s string) (Cursor, error) {
	raw, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return Cursor{}, fmt.Errorf("%w: not base64url", ErrBadCursor)
	}
	ver, rest, ok := strings.Cut(string(raw), ":")
	if !ok || ver != cursorVersion {
		return Cursor{}, fmt.Errorf("%w: unknown format", ErrBadCursor)
	}
	ns, id, ok := strings.Cut(rest, ":")
	if !ok {
		return Cursor{}, fmt.Errorf("%w: no session id", ErrBadCursor)
	}
	n, err := strconv.ParseInt(ns, 10, 64)
	if err != nil || strconv.FormatInt(n, 10) != ns {
		return Cursor{}, fmt.Errorf("%w: bad time", ErrBadCursor)
	}
	if event.ValidSession(id) != nil {
		return Cursor{}, fmt.Errorf("%w: bad session id", ErrBadCursor)
	}
	return Cursor{Started: time.Unix(0, n).UTC(), ID: id}, nil
}

// UnixNano returns t as nanoseconds since the Unix epoch, clamped to the
// int64 range (years 1678 to 2262) instead of overflowing as t.UnixNano does.
// Backends that store times as integers use it so that order is kept.
func UnixNano(t time.Time) int64 {
	const minSec, maxSec = -9223372036, 9223372035
	switch s := t.Unix(); {
	case s < minSec:
		return -1 << 63
	case s > maxSec:
		return 1<<63 - 1
	}
	return t.UnixNano()
}

// PageSize returns the page size q asks for, with DefaultLimit for zero or
// negative and capped at MaxLimit.
func (q SessionQuery) PageSize() int {
	switch {
	case q.Limit <= 0:
		return DefaultLimit
	case q.Limit > MaxLimit:
		return MaxLimit
	}
	return q.Limit
}
