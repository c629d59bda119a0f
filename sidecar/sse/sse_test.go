package sse

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// feedAll feeds s in pieces of n bytes (all at once when n <= 0).
func feedAll(t *testing.T, p *Parser, s string, n int) ([]Event, error) {
	t.Helper()
	if n <= 0 {
		n = len(s) + 1
	}
	var out []Event
	var errs []error
	for len(s) > 0 {
		k := min(n, len(s))
		evs, err := p.Feed([]byte(s[:k]))
		out = append(out, evs...)
		if err != nil {
			errs = append(errs, err)
		}
		s = s[k:]
	}
	return out, errors.Join(errs...)
}

func TestParser(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Event
	}{
		{"lf", "data: hello\n\n", []Event{{Data: "hello", Retry: -1}}},
		{"crlf", "event: ping\r\ndata: a\r\n\r\n", []Event{{Event: "ping", Data: "a", Retry: -1}}},
		{"cr", "data: a\rdata: b\r\r", []Event{{Data: "a\nb", Retry: -1}}},
		{"multi-line", "data: {\ndata:  \"x\": 1\ndata: }\n\n", []Event{{Data: "{\n \"x\": 1\n}", Retry: -1}}},
		{"comment", ": keep-alive\n\ndata: x\n: mid\n\n", []Event{{Data: "x", Retry: -1}}},
		{"no space", "data:x\n\n", []Event{{Data: "x", Retry: -1}}},
		{"field only", "data\n\n", []Event{{Data: "", Retry: -1}}},
		{"no data no event", "event: x\n\ndata: y\n\n", []Event{{Data: "y", Retry: -1}}},
		{"id persists", "id: 7\ndata: a\n\ndata: b\n\n", []Event{{Data: "a", ID: "7", Retry: -1}, {Data: "b", ID: "7", Retry: -1}}},
		{"id with nul ignored", "id: a\x00b\ndata: a\n\n", []Event{{Data: "a", Retry: -1}}},
		{"retry", "retry: 3000\ndata: a\n\nretry: x1\ndata: b\n\n", []Event{{Data: "a", Retry: 3000}, {Data: "b", Retry: -1}}},
		{"unknown field", "foo: bar\ndata: a\n\n", []Event{{Data: "a", Retry: -1}}},
		{"bom", "\xef\xbb\xbfdata: a\n\n", []Event{{Data: "a", Retry: -1}}},
		{"unterminated dropped", "data: a\n\ndata: b\n", []Event{{Data: "a", Retry: -1}}},
		{"openai", "data: {\"a\":1}\n\ndata: [DONE]\n\n", []Event{{Data: `{"a":1}`, Retry: -1}, {Data: "[DONE]", Retry: -1}}},
	}
	for _, tt := range tests {
		for _, n := range []int{0, 1, 2, 3, 7} {
			p := NewParser(Options{})
			got, err := feedAll(t, p, tt.in, n)
			if err != nil {
				t.Fatalf("%s/%d: %v", tt.name, n, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("%s/%d:\n got %#v\nwant %#v", tt.name, n, got, tt.want)
			}
		}
	}
}

func TestEnd(t *testing.T) {
	p := NewParser(Options{})
	evs, _ := p.Feed([]byte("event: done\ndata: last"))
	if len(evs) != 0 {
		t.Fatalf("early events: %v", evs)
	}
	ev, ok := p.End()
	if !ok || ev.Event != "done" || ev.Data != "last" {
		t.Fatalf("End = %#v, %v", ev, ok)
	}
	if _, ok := p.End(); ok {
		t.Fatal("End returned the event twice")
	}
}

func TestLineTooLong(t *testing.T) {
	p := NewParser(Options{MaxLine: 16})
	in := "data: " + strings.Repeat("x", 40) + "\ndata: ok\n\n"
	got, err := feedAll(t, p, in, 5)
	if !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("err = %v", err)
	}
	if len(got) != 1 || got[0].Data != "ok" {
		t.Fatalf("got %#v", got)
	}
}

func TestDataTooLong(t *testing.T) {
	p := NewParser(Options{MaxData: 8})
	got, err := feedAll(t, p, "data: 1234\ndata: 5678\ndata: 9\n\ndata: z\n\n", 0)
	if !errors.Is(err, ErrDataTooLong) {
		t.Fatalf("err = %v", err)
	}
	want := []Event{{Data: "1234", Retry: -1, Truncated: true}, {Data: "z", Retry: -1}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v", got)
	}
}

func FuzzSSE(f *testing.F) {
	f.Add([]byte("data: hello\n\n"), uint8(3))
	f.Add([]byte("event: a\r\ndata: b\r\nid: 1\r\nretry: 10\r\n\r\n"), uint8(1))
	f.Add([]byte(": c\rdata: x\r\r"), uint8(2))
	f.Add([]byte("\xef\xbb\xbfdata\n\n"), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, split uint8) {
		whole := NewParser(Options{MaxLine: 64, MaxData: 128})
		a, _ := whole.Feed(data)
		pieces := NewParser(Options{MaxLine: 64, MaxData: 128})
		n := int(split)%8 + 1
		var b []Event
		for d := data; len(d) > 0; {
			k := min(n, len(d))
			evs, _ := pieces.Feed(d[:k])
			b = append(b, evs...)
			d = d[k:]
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("split feeding differs:\n%#v\n%#v", a, b)
		}
		for _, ev := range a {
			if len(ev.Data) > 128 {
				t.Fatalf("data bound exceeded: %d", len(ev.Data))
			}
		}
		whole.End()
	})
}
