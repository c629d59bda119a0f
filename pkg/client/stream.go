package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

// ErrIncomplete is returned by Replay when the stream ended before the
// server's end frame; resume with ReplayOptions.After set to the last index
// seen.
var ErrIncomplete = errors.New("replay ended early")

// maxLine bounds one JSON line or SSE line: an event plus framing.
const maxLine = event.MaxSize + 1024

// Events calls fn for the session's events in chain order, after chain
// index after (0 for all), as the server streams them. It stops at fn's
// first error and returns it.
func (c *Client) Events(ctx context.Context, id string, after uint64, fn func(*event.Event) error) error {
	q := url.Values{}
	if after > 0 {
		q.Set("after", strconv.FormatUint(after, 10))
	}
	resp, err := c.get(ctx, sessionPath(id, "/events"), q, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	for sc.Scan() {
		if len(sc.Bytes()) == 0 {
			continue
		}
		e, err := event.Decode(sc.Bytes())
		if err != nil {
			return fmt.Errorf("session %s events: %w", id, err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("session %s events: %w", id, err)
	}
	return nil
}

// ReplayOptions tunes Replay.
type ReplayOptions struct {
	// Speed divides the original gaps between events; 0 means 1.
	Speed float64
	// After resumes after this chain index (sent as Last-Event-ID).
	After uint64
}

// Replay streams the session's events with their original timing (divided
// by Speed) and calls fn as each arrives. It returns nil when the server
// says the replay is complete, fn's first error, or an error wrapping
// ErrIncomplete when the stream breaks early.
func (c *Client) Replay(ctx context.Context, id string, o ReplayOptions, fn func(*event.Event) error) error {
	q := url.Values{}
	if o.Speed != 0 {
		q.Set("speed", strconv.FormatFloat(o.Speed, 'g', -1, 64))
	}
	hdr := http.Header{"Accept": {"text/event-stream"}}
	if o.After > 0 {
		hdr.Set("Last-Event-ID", strconv.FormatUint(o.After, 10))
	}
	resp, err := c.get(ctx, sessionPath(id, "/replay"), q, hdr)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	last := o.After
	r := newSSEReader(resp.Body, maxLine)
	for {
		f, err := r.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("session %s: %w after index %d", id, ErrIncomplete, last)
			}
			return fmt.Errorf("session %s replay after index %d: %w (%w)", id, last, err, ErrIncomplete)
		}
		if f.Event == "end" {
			var end struct {
				Events int `json:"events"`
			}
			if err := json.Unmarshal([]byte(f.Data), &end); err != nil {
				return fmt.Errorf("session %s replay: bad end frame: %w", id, err)
			}
			return nil
		}
		e, err := event.Decode([]byte(f.Data))
		if err != nil {
			return fmt.Errorf("session %s replay: %w", id, err)
		}
		if f.HasID {
			if n, err := strconv.ParseUint(f.ID, 10, 64); err == nil {
				last = n
			}
		}
		if err := fn(e); err != nil {
			return err
		}
	}
}
