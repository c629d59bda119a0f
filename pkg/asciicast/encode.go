package asciicast

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

// Default terminal size, used when a stream recorded no resize before its
// first output.
const (
	DefaultWidth  = 80
	DefaultHeight = 24
)

// BlobFunc fetches a body stored as a blob ("sha256:<hex>").
type BlobFunc func(ref string) ([]byte, error)

// Info is what a first pass over a session's events learns about one
// stream, to fill in the header before any event line is written.
type Info struct {
	// Stream is the stream's name.
	Stream string
	// Found is set once an event of the stream was seen.
	Found bool
	// Start is the time of the stream's first event.
	Start time.Time
	// Width and Height are the first recorded terminal size.
	Width, Height int
}

// Observe updates the info with one session event.
func (i *Info) Observe(e *event.Event) {
	d := e.StreamData
	if e.Kind != event.KindStreamData || d == nil || d.Stream != i.Stream {
		return
	}
	if !i.Found {
		i.Found, i.Start = true, e.Time
	}
	if d.Channel == "resize" && i.Width == 0 && d.Width > 0 && d.Height > 0 {
		i.Width, i.Height = d.Width, d.Height
	}
}

// Header returns the cast header for the stream.
func (i *Info) Header(title string) Header {
	h := Header{Version: Version, Width: i.Width, Height: i.Height, Title: title,
		Env: map[string]string{"TERM": "xterm-256color"}}
	if h.Width == 0 || h.Height == 0 {
		h.Width, h.Height = DefaultWidth, DefaultHeight
	}
	if i.Found {
		h.Timestamp = i.Start.Unix()
	}
	return h
}

// Encoder writes the events of one stream as a cast.
type Encoder struct {
	w      *Writer
	stream string
	start  time.Time
	last   float64
	blob   BlobFunc
	// carry holds the incomplete UTF-8 sequence at the end of the last
	// output or input chunk: a multi-byte character can be split between
	// two recorded chunks, and a cast's data must be whole characters.
	carry map[string][]byte
}

// NewEncoder writes the header for info's stream to w and returns an
// encoder for its events. blob fetches bodies stored by reference; nil
// skips them.
func NewEncoder(w io.Writer, info *Info, title string, blob BlobFunc) (*Encoder, error) {
	cw, err := NewWriter(w, info.Header(title))
	if err != nil {
		return nil, err
	}
	return &Encoder{w: cw, stream: info.Stream, start: info.Start, blob: blob, carry: map[string][]byte{}}, nil
}

// Add writes the cast line for one session event; events of other kinds
// or streams are ignored.
func (c *Encoder) Add(e *event.Event) error {
	d := e.StreamData
	if e.Kind != event.KindStreamData || d == nil || d.Stream != c.stream {
		return nil
	}
	t := max(e.Time.Sub(c.start).Seconds(), c.last)
	c.last = t
	switch d.Channel {
	case "stdout", "stderr":
		return c.data(t, CodeOutput, d.Data)
	case "stdin":
		return c.data(t, CodeInput, d.Data)
	case "resize":
		if d.Width <= 0 || d.Height <= 0 {
			return nil
		}
		return c.w.WriteEvent(Event{Time: t, Code: CodeResize, Data: strconv.Itoa(d.Width) + "x" + strconv.Itoa(d.Height)})
	}
	return nil
}

func (c *Encoder) data(t float64, code string, b *event.Body) error {
	p, err := c.bytes(b)
	if err != nil {
		return err
	}
	p = append(c.carry[code], p...)
	keep := incomplete(p)
	c.carry[code] = slices.Clone(p[len(p)-keep:])
	p = p[:len(p)-keep]
	if len(p) == 0 {
		return nil
	}
	return c.w.WriteEvent(Event{Time: t, Code: code, Data: string(p)})
}

// Close writes out bytes held back as an incomplete character.
func (c *Encoder) Close() error {
	for _, code := range []string{CodeOutput, CodeInput} {
		if p := c.carry[code]; len(p) > 0 {
			delete(c.carry, code)
			if err := c.w.WriteEvent(Event{Time: c.last, Code: code, Data: string(p)}); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *Encoder) bytes(b *event.Body) ([]byte, error) {
	switch {
	case b == nil:
		return nil, nil
	case b.Ref != "":
		if c.blob == nil {
			return nil, nil
		}
		p, err := c.blob(b.Ref)
		if err != nil {
			return nil, fmt.Errorf("blob %s: %w", b.Ref, err)
		}
		return p, nil
	case b.B64 != nil:
		return b.B64, nil
	}
	return []byte(b.Text), nil
}

// incomplete returns how many bytes at the end of p start a UTF-8
// character that is not yet complete.
func incomplete(p []byte) int {
	for i := 1; i <= utf8.UTFMax-1 && i <= len(p); i++ {
		c := p[len(p)-i]
		if c < 0x80 {
			return 0
		}
		if utf8.RuneStart(c) {
			if utf8.FullRune(p[len(p)-i:]) {
				return 0
			}
			return i
		}
	}
	return 0
}

// Terminal reports whether e is a stream.data event of a terminal stream
// (exec, attach, port-forward: stdin, stdout, stderr, resize or exit), as
// opposed to the "data" chunks of a streamed HTTP/2 response body.
func Terminal(e *event.Event) bool {
	if e.Kind != event.KindStreamData || e.StreamData == nil {
		return false
	}
	switch e.StreamData.Channel {
	case "stdin", "stdout", "stderr", "resize", "exit":
		return true
	}
	return false
}

// Streams returns the names of the terminal streams (see Terminal), in
// order of first appearance.
func Streams(evs []*event.Event) []string {
	var out []string
	for _, e := range evs {
		if Terminal(e) && !slices.Contains(out, e.StreamData.Stream) {
			out = append(out, e.StreamData.Stream)
		}
	}
	return out
}

// Write writes the cast of one stream of a session's events. It returns
// ErrNoStream if no event belongs to the stream.
func Write(w io.Writer, evs []*event.Event, stream, title string, blob BlobFunc) error {
	info := &Info{Stream: stream}
	for _, e := range evs {
		info.Observe(e)
	}
	if !info.Found {
		return fmt.Errorf("%w: %q", ErrNoStream, stream)
	}
	enc, err := NewEncoder(w, info, title, blob)
	if err != nil {
		return err
	}
	for _, e := range evs {
		if err := enc.Add(e); err != nil {
			return err
		}
	}
	return enc.Close()
}
