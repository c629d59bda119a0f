package event

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func sample() *Event {
	e := New("6f1c2d3e-0000-4000-8000-000000000001", KindHTTPRequest, time.Date(2026, 11, 28, 12, 0, 0, 5, time.UTC))
	e.Seq = 7
	e.Source = SourceSidecar
	e.Identity = &Identity{User: "alice@example.com", Namespace: "agents", Pod: "coder-0"}
	e.Dest = &Destination{Addr: "10.0.0.1:80", Host: "api.internal", Protocol: "http1"}
	e.HTTPRequest = &HTTPRequest{Stream: 1, Proto: "HTTP/1.1", Method: "GET", URL: "/v1/items",
		Headers: map[string][]string{"Authorization": {"[REDACTED]"}, "Accept": {"*/*"}},
		Body:    &Body{Size: 3, Recorded: 3, Text: "abc"}}
	return e
}

func TestRoundTrip(t *testing.T) {
	e := sample()
	b, err := Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	b2, err := Encode(got)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, b2) {
		t.Fatalf("re-encoding differs:\n%s\n%s", b, b2)
	}
}

func TestCanonicalIgnoresChain(t *testing.T) {
	e := sample()
	a, err := Canonical(e)
	if err != nil {
		t.Fatal(err)
	}
	e.Chain = &Chain{Index: 1, Hash: "ff"}
	b, err := Canonical(e)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("canonical bytes depend on the chain link")
	}
	if e.Chain == nil {
		t.Fatal("Canonical cleared the caller's chain")
	}
}

func TestDecodeRejects(t *testing.T) {
	good, err := Encode(sample())
	if err != nil {
		t.Fatal(err)
	}
	replace := func(old, new string) []byte { return []byte(strings.Replace(string(good), old, new, 1)) }
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"not json", []byte("{"), ErrInvalid},
		{"no version", replace(`"v":1,`, ""), ErrVersion},
		{"future version", replace(`"v":1`, `"v":2`), ErrVersion},
		{"too large", append(bytes.Repeat([]byte(" "), MaxSize), good...), ErrTooLarge},
		{"bad session", replace(`"session":"6f1c2d3e`, `"session":"a.b`), ErrInvalidSession},
		{"unknown kind", replace(`"kind":"http.request"`, `"kind":"nope"`), ErrInvalid},
		{"wrong payload", replace(`"kind":"http.request"`, `"kind":"conn.open"`), ErrInvalid},
		{"bad id", replace(`"id":"`, `"id":"x`), ErrInvalid},
		{"no time", replace(`"time":"2026-11-28T12:00:00.000000005Z"`, `"time":"0001-01-01T00:00:00Z"`), ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(tt.data)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestEveryKindHasPayload(t *testing.T) {
	for _, k := range Kinds() {
		e := New("s1", k, time.Now())
		if err := e.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s without payload: %v", k, err)
		}
	}
}

func TestIDsSortByTime(t *testing.T) {
	t0 := time.Now()
	a, b := NewID(t0), NewID(t0.Add(time.Millisecond))
	if a >= b {
		t.Fatalf("ids not ordered: %s >= %s", a, b)
	}
}

func FuzzDecode(f *testing.F) {
	good, err := Encode(sample())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"v":1}`))
	f.Add([]byte(`{"v":2,"id":"01J"}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"v":1,"id":"01JDXXXXXXXXXXXXXXXXXXXXXX","session":"s","time":"2026-01-01T00:00:00Z","kind":"conn.open","conn_open":{}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := Decode(data)
		if err != nil {
			return
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("decoded event does not validate: %v", err)
		}
		b, err := Encode(e)
		if err != nil {
			t.Fatalf("decoded event does not encode: %v", err)
		}
		if _, err := Decode(b); err != nil {
			t.Fatalf("re-encoded event does not decode: %v\n%s", err, b)
		}
	})
}

func TestCanonicalOfDecodedEvent(t *testing.T) {
	orig := sample()
	good, err := Encode(orig)
	if err != nil {
		t.Fatal(err)
	}
	// A producer's own formatting is kept byte for byte.
	spaced := []byte(strings.Replace(string(good), `"kind":`, `"kind" : `, 1))
	e, err := Decode(spaced)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Canonical(e)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c, spaced) {
		t.Fatalf("canonical bytes of a decoded event are not what was read:\n%s", c)
	}
	// A chained event (as read back from the store) is encoded without its link.
	withChain := *orig
	withChain.Chain = &Chain{Index: 1, Hash: "ff"}
	b, err := Encode(&withChain)
	if err != nil {
		t.Fatal(err)
	}
	e, err = Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := Canonical(e); err != nil || !bytes.Equal(c, good) {
		t.Fatalf("canonical of a chained event = %s, %v; want %s", c, err, good)
	}
}
