package asciicast

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Version is the asciicast format version this package writes and reads.
const Version = 2

// ContentType is the media type of an asciicast file.
const ContentType = "application/x-asciicast"

// Event codes.
const (
	CodeOutput = "o"
	CodeInput  = "i"
	CodeResize = "r"
	CodeMarker = "m"
)

// ErrFormat is returned by Read for input that is not an asciicast v2
// recording. It is wrapped with detail; check it with errors.Is.
var ErrFormat = errors.New("not an asciicast v2 recording")

// ErrNoStream is returned by Write when a session has no events of the
// requested stream.
var ErrNoStream = errors.New("no such stream")

// maxLine bounds one line Read accepts.
const maxLine = 4 << 20

// Header is the first line of a cast.
type Header struct {
	Version   int               `json:"version"`
	Width     int               `json:"width"`
	Height    int               `json:"height"`
	Timestamp int64             `json:"timestamp,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
	Title     string            `json:"title,omitempty"`
}

// Event is one line after the header: Time seconds after the start, a
// Code and its Data.
type Event struct {
	Time float64
	Code string
	Data string
}

// MarshalJSON writes the event as [time, code, data] with microsecond
// precision, as asciinema does.
func (e Event) MarshalJSON() ([]byte, error) {
	code, err := json.Marshal(e.Code)
	if err != nil {
		return nil, err
	}
	data, err := json.Marshal(e.Data)
	if err != nil {
		return nil, err
	}
	b := []byte{'['}
	b = strconv.AppendFloat(b, e.Time, 'f', 6, 64)
	b = append(b, ", "...)
	b = append(b, code...)
	b = append(b, ", "...)
	b = append(b, data...)
	return append(b, ']'), nil
}

// UnmarshalJSON reads [time, code, data].
func (e *Event) UnmarshalJSON(b []byte) error {
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	if len(raw) != 3 {
		return fmt.Errorf("event has %d elements, want 3", len(raw))
	}
	if err := json.Unmarshal(raw[0], &e.Time); err != nil {
		return fmt.Errorf("event time: %w", err)
	}
	if err := json.Unmarshal(raw[1], &e.Code); err != nil {
		return fmt.Errorf("event code: %w", err)
	}
	if err := json.Unmarshal(raw[2], &e.Data); err != nil {
		return fmt.Errorf("event data: %w", err)
	}
	return nil
}

// Writer writes a cast line by line.
type Writer struct {
	w io.Writer
}

// NewWriter writes the header to w and returns a writer for the events.
// A zero Version is written as Version.
func NewWriter(w io.Writer, h Header) (*Writer, error) {
	if h.Version == 0 {
		h.Version = Version
	}
	b, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("encode asciicast header: %w", err)
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("write asciicast header: %w", err)
	}
	return &Writer{w: w}, nil
}

// WriteEvent writes one event line.
func (w *Writer) WriteEvent(e Event) error {
	b, err := e.MarshalJSON()
	if err != nil {
		return fmt.Errorf("encode asciicast event: %w", err)
	}
	if _, err := w.w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("write asciicast event: %w", err)
	}
	return nil
}

// Read parses a whole cast.
func Read(r io.Reader) (Header, []Event, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	var h Header
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return h, nil, fmt.Errorf("read asciicast header: %w", err)
		}
		return h, nil, fmt.Errorf("%w: empty", ErrFormat)
	}
	if err := json.Unmarshal(sc.Bytes(), &h); err != nil {
		return h, nil, fmt.Errorf("%w: header: %w", ErrFormat, err)
	}
	if h.Version != Version {
		return h, nil, fmt.Errorf("%w: version %d", ErrFormat, h.Version)
	}
	var evs []Event
	for line := 2; sc.Scan(); line++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return h, evs, fmt.Errorf("%w: line %d: %w", ErrFormat, line, err)
		}
		evs = append(evs, e)
	}
	if err := sc.Err(); err != nil {
		return h, evs, fmt.Errorf("read asciicast: %w", err)
	}
	return h, evs, nil
}
