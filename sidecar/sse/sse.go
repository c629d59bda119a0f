package sse

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// Default bounds of a Parser.
const (
	DefaultMaxLine = 1 << 20
	DefaultMaxData = 8 << 20
)

// ErrLineTooLong is returned by Feed when a line exceeds the parser's bound.
// The line is dropped and parsing continues with the next one.
var ErrLineTooLong = errors.New("sse line too long")

// ErrDataTooLong is returned by Feed when an event's data exceeds the
// parser's bound. The excess lines are dropped; the event is still
// dispatched, with Truncated set.
var ErrDataTooLong = errors.New("sse event data too long")

// Event is one dispatched server-sent event.
type Event struct {
	// Event is the event type; empty means the default type "message".
	Event string
	// Data is the event's data lines joined with "\n".
	Data string
	// ID is the last event id seen on the stream so far, as the standard
	// defines it (ids persist across events).
	ID string
	// Retry is the reconnection time in milliseconds from a retry field of
	// this event, or -1 when the event had none.
	Retry int
	// Truncated says data lines were dropped because of the data bound.
	Truncated bool
}

// Options bound a Parser's memory use. Zero fields take the defaults.
type Options struct {
	// MaxLine is the longest line kept, in bytes.
	MaxLine int
	// MaxData is the most data kept per event, in bytes.
	MaxData int
}

// Parser is an incremental event-stream parser. The zero value is not
// usable; create one with NewParser. A Parser is not safe for concurrent use.
type Parser struct {
	maxLine, maxData int

	line     []byte
	skipLine bool // the current line overflowed and is being dropped
	lastCR   bool // the previous byte was a CR, so a following LF is part of it
	started  bool // the first byte (and a possible BOM) was handled
	bom      int  // bytes of a leading BOM matched so far

	event     string
	data      []byte
	hasData   bool
	truncated bool
	lastID    string
	retry     int
}

// NewParser returns a parser with the given bounds.
func NewParser(o Options) *Parser {
	if o.MaxLine <= 0 {
		o.MaxLine = DefaultMaxLine
	}
	if o.MaxData <= 0 {
		o.MaxData = DefaultMaxData
	}
	return &Parser{maxLine: o.MaxLine, maxData: o.MaxData, retry: -1}
}

var bom = []byte("\xef\xbb\xbf")

// Feed parses the next bytes of the stream and returns the events they
// completed. Bytes of an unfinished line or event are kept for the next
// call. The error, if any, is ErrLineTooLong or ErrDataTooLong (wrapped);
// the parser stays usable after either and the returned events are valid.
func (p *Parser) Feed(b []byte) ([]Event, error) {
	var out []Event
	var errs []error
	for len(b) > 0 {
		if !p.started {
			// Strip one leading UTF-8 BOM, which may itself be split.
			if b[0] == bom[p.bom] {
				p.bom++
				b = b[1:]
				if p.bom == len(bom) {
					p.started = true
				}
				continue
			}
			p.started = true
			if p.bom > 0 {
				// Not a BOM after all: the bytes were line content.
				partial := bom[:p.bom]
				p.bom = 0
				if err := p.appendLine(partial); err != nil {
					errs = append(errs, err)
				}
			}
		}
		if p.lastCR {
			p.lastCR = false
			if b[0] == '\n' {
				b = b[1:]
				continue
			}
		}
		i := bytes.IndexAny(b, "\r\n")
		if i < 0 {
			if err := p.appendLine(b); err != nil {
				errs = append(errs, err)
			}
			break
		}
		if err := p.appendLine(b[:i]); err != nil {
			errs = append(errs, err)
		}
		if b[i] == '\r' {
			p.lastCR = true
		}
		b = b[i+1:]
		if ev, ok, err := p.endLine(); ok {
			out = append(out, ev)
		} else if err != nil {
			errs = append(errs, err)
		}
	}
	return out, errors.Join(errs...)
}

// End reports the event that an unterminated stream left pending, as a
// lenient reader would dispatch it. The standard discards such an event;
// recorders keep it because many servers close without a final blank line.
func (p *Parser) End() (Event, bool) {
	if len(p.line) > 0 && !p.skipLine {
		// A data bound hit on the last line only marks the event Truncated,
		// which dispatch reports; End has no other way to say it.
		_ = p.processLine(p.line)
	}
	p.line = p.line[:0]
	p.skipLine = false
	return p.dispatch()
}

func (p *Parser) appendLine(b []byte) error {
	if p.skipLine {
		return nil
	}
	if len(p.line)+len(b) > p.maxLine {
		p.skipLine = true
		p.line = p.line[:0]
		return fmt.Errorf("%w: more than %d bytes", ErrLineTooLong, p.maxLine)
	}
	p.line = append(p.line, b...)
	return nil
}

// endLine handles a complete line and returns an event if it was blank.
func (p *Parser) endLine() (Event, bool, error) {
	if p.skipLine {
		p.skipLine = false
		p.line = p.line[:0]
		return Event{}, false, nil
	}
	line := p.line
	p.line = p.line[:0]
	if len(line) == 0 {
		ev, ok := p.dispatch()
		return ev, ok, nil
	}
	return Event{}, false, p.processLine(line)
}

func (p *Parser) processLine(line []byte) error {
	if line[0] == ':' {
		return nil // comment
	}
	field, value := line, []byte(nil)
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		field, value = line[:i], line[i+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	switch string(field) {
	case "event":
		p.event = string(value)
	case "data":
		if p.truncated {
			return nil // already reported; drop the rest of the event's data
		}
		if len(p.data)+len(value)+1 > p.maxData {
			p.truncated = true
			p.hasData = true
			return fmt.Errorf("%w: more than %d bytes", ErrDataTooLong, p.maxData)
		}
		if p.hasData {
			p.data = append(p.data, '\n')
		}
		p.data = append(p.data, value...)
		p.hasData = true
	case "id":
		if bytes.IndexByte(value, 0) < 0 {
			p.lastID = string(value)
		}
	case "retry":
		if n, err := strconv.Atoi(string(value)); err == nil && n >= 0 && isDigits(value) {
			p.retry = n
		}
	}
	return nil
}

func (p *Parser) dispatch() (Event, bool) {
	defer func() {
		p.event = ""
		p.data = p.data[:0]
		p.hasData = false
		p.truncated = false
		p.retry = -1
	}()
	if !p.hasData {
		return Event{}, false
	}
	return Event{Event: p.event, Data: string(p.data), ID: p.lastID, Retry: p.retry, Truncated: p.truncated}, true
}

func isDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}
