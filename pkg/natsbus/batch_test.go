package natsbus

import (
	"bytes"
	"errors"
	"strconv"
	"testing"
)

func TestSplitEvents(t *testing.T) {
	cases := []struct {
		name  string
		count string
		data  string
		want  []string // nil: ErrBatch
	}{
		{"one", "1", "{}\n", []string{"{}"}},
		{"three", "3", "{\"a\":1}\n{}\n{\"b\":2}\n", []string{`{"a":1}`, "{}", `{"b":2}`}},
		{"empty lines are lines", "2", "\n\n", []string{"", ""}},
		{"count too high", "3", "{}\n{}\n", nil},
		{"count too low", "1", "{}\n{}\n", nil},
		{"no final newline", "2", "{}\n{}", nil},
		{"trailing bytes", "2", "{}\n{}\nx", nil},
		{"empty data", "1", "", nil},
		{"zero", "0", "", nil},
		{"empty count", "", "{}\n", nil},
		{"signed", "+1", "{}\n", nil},
		{"negative", "-1", "{}\n", nil},
		{"spaces", " 1", "{}\n", nil},
		{"hex", "0x1", "{}\n", nil},
		{"huge", "99999999999999999999", "{}\n", nil},
		{"leading zero", "01", "{}\n", []string{"{}"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lines, err := SplitEvents(c.count, []byte(c.data))
			if c.want == nil {
				if !errors.Is(err, ErrBatch) {
					t.Fatalf("SplitEvents(%q, %q) = %q, %v; want ErrBatch", c.count, c.data, lines, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(lines) != len(c.want) {
				t.Fatalf("%d lines %q, want %q", len(lines), lines, c.want)
			}
			for i := range lines {
				if string(lines[i]) != c.want[i] {
					t.Fatalf("line %d = %q, want %q", i, lines[i], c.want[i])
				}
			}
		})
	}
}

func TestBatchMsgID(t *testing.T) {
	if got := BatchMsgID("01KB5Q0Y3S6N9V8C3X7D2E4F5G", 12); got != "01KB5Q0Y3S6N9V8C3X7D2E4F5G+12" {
		t.Fatalf("BatchMsgID = %q", got)
	}
}

// FuzzSplitEvents checks that SplitEvents never panics and that what it
// accepts is exactly the lines the header announced, in order.
func FuzzSplitEvents(f *testing.F) {
	f.Add("1", []byte("{}\n"))
	f.Add("2", []byte("{\"v\":1}\n{\"v\":1,\"id\":\"x\"}\n"))
	f.Add("2", []byte("{}\n{}"))
	f.Add("0", []byte(""))
	f.Add("3", []byte("\n\n\n"))
	f.Add("x", []byte("{}\n"))
	f.Fuzz(func(t *testing.T, count string, data []byte) {
		lines, err := SplitEvents(count, data)
		if err != nil {
			if !errors.Is(err, ErrBatch) {
				t.Fatalf("error %v does not wrap ErrBatch", err)
			}
			return
		}
		n, err := strconv.Atoi(count)
		if err != nil || n != len(lines) || n < 1 {
			t.Fatalf("count %q accepted with %d lines", count, len(lines))
		}
		var joined []byte
		for _, l := range lines {
			if bytes.IndexByte(l, '\n') >= 0 {
				t.Fatalf("line %q holds a newline", l)
			}
			joined = append(append(joined, l...), '\n')
		}
		if !bytes.Equal(joined, data) {
			t.Fatalf("lines %q do not make up %q", lines, data)
		}
	})
}

func TestEventLines(t *testing.T) {
	single := []byte(`{"id":"a"}`)
	lines, err := EventLines(nil, single)
	if err != nil || len(lines) != 1 || string(lines[0]) != string(single) {
		t.Fatalf("single event: %q, %v", lines, err)
	}
	lines, err = EventLines(map[string][]string{EventsHeader: {"2"}}, []byte("{\"id\":\"a\"}\n{\"id\":\"b\"}\n"))
	if err != nil || len(lines) != 2 || string(lines[1]) != `{"id":"b"}` {
		t.Fatalf("batch: %q, %v", lines, err)
	}
	for _, h := range []map[string][]string{{EventsHeader: nil}, {EventsHeader: {"3"}}} {
		if _, err := EventLines(h, []byte("{}\n{}\n")); !errors.Is(err, ErrBatch) {
			t.Errorf("header %v: err %v, want ErrBatch", h, err)
		}
	}
}
