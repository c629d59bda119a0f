package client

import (
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

func readAll(t *testing.T, in string) ([]sseFrame, error) {
	t.Helper()
	r := newSSEReader(strings.NewReader(in), 1024)
	var out []sseFrame
	for {
		f, err := r.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, err
		}
		out = append(out, f)
	}
}

func TestSSEReader(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []sseFrame
		err  error
	}{
		{"one", "event: a\nid: 1\ndata: {}\n\n", []sseFrame{{Event: "a", ID: "1", HasID: true, Data: "{}"}}, nil},
		{"crlf", "event: a\r\ndata: x\r\n\r\n", []sseFrame{{Event: "a", Data: "x"}}, nil},
		{"cr", "event: a\rdata: x\r\r", []sseFrame{{Event: "a", Data: "x"}}, nil},
		{"no space", "event:a\ndata:x\n\n", []sseFrame{{Event: "a", Data: "x"}}, nil},
		{"two spaces", "data:  x\n\n", []sseFrame{{Data: " x"}}, nil},
		{"multi data", "data: a\ndata: b\n\n", []sseFrame{{Data: "a\nb"}}, nil},
		{"comments", ": hi\nevent: a\n: mid\ndata: x\n\n", []sseFrame{{Event: "a", Data: "x"}}, nil},
		{"no data not dispatched", "event: a\n\nevent: b\ndata: y\n\n", []sseFrame{{Event: "b", Data: "y"}}, nil},
		{"unknown fields", "retry: 10\nfoo\ndata: x\n\n", []sseFrame{{Data: "x"}}, nil},
		{"nul id ignored", "id: a\x00b\ndata: x\n\n", []sseFrame{{Data: "x"}}, nil},
		{"several", "data: 1\n\ndata: 2\n\n", []sseFrame{{Data: "1"}, {Data: "2"}}, nil},
		{"empty", "", nil, nil},
		{"cut", "data: 1\n\nevent: a\ndata: 2\n", []sseFrame{{Data: "1"}}, io.ErrUnexpectedEOF},
		{"too long", "data: " + strings.Repeat("x", 2000) + "\n\n", nil, errors.New("any")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readAll(t, tt.in)
			switch {
			case tt.err == nil && err != nil:
				t.Fatalf("error %v", err)
			case tt.err != nil && err == nil:
				t.Fatalf("no error, want %v", tt.err)
			case errors.Is(tt.err, io.ErrUnexpectedEOF) && !errors.Is(err, io.ErrUnexpectedEOF):
				t.Fatalf("error %v, want %v", err, tt.err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("frames = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// FuzzSSEReader checks the parser never panics or loops, and that what it
// returns could not have smuggled a line break into a field but data.
func FuzzSSEReader(f *testing.F) {
	for _, s := range []string{
		"event: a\nid: 1\ndata: {}\n\n", "data: a\r\ndata: b\r\r\n", ":\n\n", "data", "id: \x00\ndata:\n\n",
		"event: end\ndata: {\"events\":1}\n\n", "\r\r\r", "data: x\r",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		r := newSSEReader(strings.NewReader(in), 4096)
		for range len(in) + 1 {
			fr, err := r.Next()
			if err != nil {
				return
			}
			if strings.ContainsAny(fr.Event+fr.ID, "\r\n") || strings.ContainsRune(fr.Data, '\r') {
				t.Fatalf("frame %+v carries a line break", fr)
			}
		}
		t.Fatalf("more frames than input bytes")
	})
}
