package natsbus

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// EventsHeader marks a message on an event subject as a batch: its value is
// the number n of events (decimal, at least 1), and the data is n JSON
// events, each followed by '\n' (JSON lines). A message without it is one
// JSON event, as it always was. A JSON encoder escapes every newline inside
// strings and adds none between tokens in compact output, so '\n' cannot
// occur inside an event.
//
// A batch's Nats-Msg-Id is BatchMsgID of its first event: an identical
// resend is dropped by JetStream's duplicate window, and a resend grouped
// differently (the same events, another first event or count) is dropped
// by the store, which keeps one row per event id.
const EventsHeader = "Chaperone-Events"

// ErrBatch means a batch message does not match its EventsHeader.
var ErrBatch = errors.New("malformed event batch")

// BatchMsgID is the Nats-Msg-Id of a batch of n events whose first event
// has id first.
func BatchMsgID(first string, n int) string {
	return string(AppendBatchMsgID(nil, first, n))
}

// AppendBatchMsgID appends BatchMsgID(first, n) to b.
func AppendBatchMsgID(b []byte, first string, n int) []byte {
	b = append(b, first...)
	b = append(b, '+')
	return strconv.AppendInt(b, int64(n), 10)
}

// SplitEvents splits the data of a batch message into its events; count is
// the message's EventsHeader value. The lines alias data and exclude their
// '\n'. It fails, wrapping ErrBatch, when count is not a positive decimal
// number or data does not hold exactly count lines each ending in '\n';
// what a line holds is the caller's to check.
func SplitEvents(count string, data []byte) ([][]byte, error) {
	n, err := ParseEventCount(count)
	if err != nil {
		return nil, err
	}
	if got := bytes.Count(data, []byte{'\n'}); got != n {
		return nil, fmt.Errorf("%w: header says %d events, data has %d lines", ErrBatch, n, got)
	}
	if data[len(data)-1] != '\n' {
		return nil, fmt.Errorf("%w: %d bytes after the last line", ErrBatch, len(data)-bytes.LastIndexByte(data, '\n')-1)
	}
	lines := make([][]byte, 0, n)
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		lines = append(lines, data[:i:i])
		data = data[i+1:]
	}
	return lines, nil
}

// EventLines returns the events a message of an event subject carries:
// its data when header has no EventsHeader, else its batch's lines (see
// SplitEvents). Consumers of the events subject read messages with it.
func EventLines(header map[string][]string, data []byte) ([][]byte, error) {
	v, ok := header[EventsHeader]
	if !ok {
		return [][]byte{data}, nil
	}
	count := ""
	if len(v) > 0 {
		count = v[0]
	}
	return SplitEvents(count, data)
}

// ParseEventCount parses an EventsHeader value: a decimal number from 1 up,
// digits only.
func ParseEventCount(count string) (int, error) {
	if count == "" || len(count) > 9 {
		return 0, fmt.Errorf("%w: event count %.20q", ErrBatch, count)
	}
	n := 0
	for i := range len(count) {
		c := count[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: event count %.20q", ErrBatch, count)
		}
		n = n*10 + int(c-'0')
	}
	if n == 0 {
		return 0, fmt.Errorf("%w: event count 0", ErrBatch)
	}
	return n, nil
}
