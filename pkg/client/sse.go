package client

import (
	"bufio"
	"bytes"
	"io"
	"strings"
)

// sseFrame is one dispatched server-sent event.
type sseFrame struct {
	Event string
	ID    string
	// HasID is set when the frame carried an id field.
	HasID bool
	Data  string
}

// sseReader parses a text/event-stream as the HTML standard defines it:
// lines end in CRLF, LF or CR; "field: value" with one optional space;
// comment lines start with ':'; data lines join with '\n'; a blank line
// dispatches the frame; a frame without data is not dispatched.
type sseReader struct {
	sc *bufio.Scanner
}

func newSSEReader(r io.Reader, maxLine int) *sseReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, min(64<<10, maxLine)), maxLine)
	sc.Split(scanSSELines)
	return &sseReader{sc: sc}
}

// scanSSELines splits on CRLF, LF or a lone CR.
func scanSSELines(data []byte, atEOF bool) (int, []byte, error) {
	if atEOF && len(data) == 0 {
		return 0, nil, nil
	}
	if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
		if data[i] == '\n' {
			return i + 1, data[:i], nil
		}
		// CR: a following LF belongs to it, which we can only know once
		// the next byte is buffered.
		if i+1 < len(data) {
			if data[i+1] == '\n' {
				return i + 2, data[:i], nil
			}
			return i + 1, data[:i], nil
		}
		if atEOF {
			return i + 1, data[:i], nil
		}
		return 0, nil, nil
	}
	if atEOF {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// Next returns the next frame, io.EOF at a clean end of stream, or
// io.ErrUnexpectedEOF when the stream ends inside a frame.
func (r *sseReader) Next() (sseFrame, error) {
	var (
		f       sseFrame
		data    strings.Builder
		hasData bool
		partial bool
	)
	for r.sc.Scan() {
		line := r.sc.Text()
		if line == "" {
			if hasData {
				f.Data = data.String()
				return f, nil
			}
			f, data, partial = sseFrame{}, strings.Builder{}, false
			continue
		}
		if line[0] == ':' {
			continue
		}
		partial = true
		name, value, found := strings.Cut(line, ":")
		if found {
			value = strings.TrimPrefix(value, " ")
		}
		switch name {
		case "event":
			f.Event = value
		case "data":
			if hasData {
				data.WriteByte('\n')
			}
			data.WriteString(value)
			hasData = true
		case "id":
			if !strings.ContainsRune(value, 0) {
				f.ID, f.HasID = value, true
			}
		}
	}
	if err := r.sc.Err(); err != nil {
		return sseFrame{}, err
	}
	if partial {
		return sseFrame{}, io.ErrUnexpectedEOF
	}
	return sseFrame{}, io.EOF
}
