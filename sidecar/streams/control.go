package streams

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

type controlKind int

const (
	kindStatus controlKind = iota
	kindResize
)

// maxResize caps a buffered resize message; a real one is about 30 bytes.
// Resize messages are parsed as they arrive (the SPDY stream carries one
// after another), so the cap also bounds the cost of re-parsing garbage.
const maxResize = 1 << 10

// control assembles the small JSON messages of the error and resize
// channels. A status is parsed once, at the end of its message or stream;
// resizes as each one completes. An over-long message is dropped.
type control struct {
	kind controlKind
	buf  []byte
	over bool
}

// status is the part of a metav1.Status the error channel carries.
type status struct {
	Status  string `json:"status"`
	Message string `json:"message"`
	Reason  string `json:"reason"`
	Details *struct {
		Causes []struct {
			Reason  string `json:"reason"`
			Message string `json:"message"`
		} `json:"causes"`
	} `json:"details"`
}

// size is the terminal size message of the resize channel.
type size struct {
	Width  int `json:"Width"`
	Height int `json:"Height"`
}

func (c *control) write(d *Decoder, sub string, p []byte) {
	if c.over {
		return
	}
	limit := maxControl
	if c.kind == kindResize {
		limit = maxResize
	}
	if len(c.buf)+len(p) > limit {
		c.buf = nil
		// A status is one message: drop it whole. The resize stream goes
		// on, so start afresh and pick up the next complete object.
		c.over = c.kind == kindStatus
		return
	}
	c.buf = append(c.buf, p...)
	if c.kind == kindResize && bytes.IndexByte(p, '}') >= 0 {
		c.resizes(d, sub)
	}
}

// end is called at the end of a message (WebSocket) or stream (SPDY).
func (c *control) end(d *Decoder, sub string) {
	if c.kind == kindStatus && len(bytes.TrimSpace(c.buf)) > 0 && !c.over {
		c.status(d, sub)
	}
	c.buf, c.over = c.buf[:0], false
}

// resizes emits every complete size object in the buffer. The SPDY resize
// stream carries a sequence of JSON objects; a WebSocket message one.
func (c *control) resizes(d *Decoder, sub string) {
	dec := json.NewDecoder(bytes.NewReader(c.buf))
	used := int64(0)
	for {
		var s size
		if err := dec.Decode(&s); err != nil {
			var syn *json.SyntaxError
			if errors.As(err, &syn) {
				c.buf = c.buf[:0] // garbage: start over with the next message
				return
			}
			break
		}
		used = dec.InputOffset()
		d.emit(&event.StreamData{Stream: d.name(sub), Channel: ChannelResize, Width: s.Width, Height: s.Height})
	}
	c.buf = append(c.buf[:0], c.buf[used:]...)
}

// status emits the exit event for the buffered error-channel message:
// a metav1.Status (v4 and later) or plain text (older protocols).
func (c *control) status(d *Decoder, sub string) {
	raw := bytes.TrimSpace(c.buf)
	c.buf = c.buf[:0]
	if len(raw) == 0 {
		return
	}
	sd := &event.StreamData{Stream: d.name(sub), Channel: ChannelExit}
	var s status
	if err := json.Unmarshal(raw, &s); err != nil || s.Status == "" {
		sd.Data = body(raw)
		d.emit(sd)
		return
	}
	if s.Status == "Success" {
		zero := 0
		sd.Exit = &zero
		d.emit(sd)
		return
	}
	if s.Details != nil {
		for _, cause := range s.Details.Causes {
			if cause.Reason != "ExitCode" {
				continue
			}
			if n, err := strconv.Atoi(cause.Message); err == nil {
				sd.Exit = &n
			}
		}
	}
	if sd.Exit == nil && s.Message != "" {
		sd.Data = body([]byte(s.Message))
	}
	d.emit(sd)
}
