package event

import (
	"bytes"
	"encoding/json"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// checkFastDecode fails unless data takes the fast decoder and gives what
// encoding/json gives.
func checkFastDecode(t testing.TB, data []byte) {
	t.Helper()
	var fast Event
	if !fastDecode(data, &fast) {
		t.Fatalf("fast decoder declined %s", data)
	}
	var want Event
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatalf("fast decoder took what encoding/json refuses (%v): %s", err, data)
	}
	if !reflect.DeepEqual(fast, want) {
		t.Fatalf("fast decoding differs from encoding/json for %s:\n got %+v\nwant %+v", data, fast, want)
	}
}

func TestFastDecodeMatchesJSON(t *testing.T) {
	for _, e := range append(fullEvents(), sidecarResponse()) {
		t.Run(string(e.Kind), func(t *testing.T) {
			data, err := Encode(e)
			if err != nil {
				t.Fatal(err)
			}
			checkFastDecode(t, data)
		})
	}
}

func TestFastDecodeDeclines(t *testing.T) {
	good, err := Encode(fullEvents()[2])
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{
		"whitespace":      " " + string(good),
		"trailing":        string(good) + "x",
		"unknown member":  strings.Replace(string(good), `"conn":`, `"connx":`, 1),
		"other case":      strings.Replace(string(good), `"conn":`, `"Conn":`, 1),
		"duplicate":       strings.Replace(string(good), `"conn":"c-1"`, `"conn":"c-1","conn":"c-2"`, 1),
		"null":            strings.Replace(string(good), `"conn":"c-1"`, `"conn":null`, 1),
		"float":           strings.Replace(string(good), `"v":1`, `"v":1.0`, 1),
		"leading zero":    strings.Replace(string(good), `"v":1`, `"v":01`, 1),
		"negative uint":   strings.Replace(string(good), `"seq":`, `"seq":-`, 1),
		"surrogate":       strings.Replace(string(good), `"conn":"c-1"`, `"conn":"\ud83d\ude00"`, 1),
		"invalid utf-8":   strings.Replace(string(good), `"conn":"c-1"`, "\"conn\":\"\xff\"", 1),
		"raw control":     strings.Replace(string(good), `"conn":"c-1"`, "\"conn\":\"\x01\"", 1),
		"other kind":      `{"v":1,"session_start":{"origin":"run"}}`,
		"escaped time":    strings.Replace(string(good), `"time":"`, `"time":"\u0032`, 1),
		"truncated":       string(good[:len(good)-1]),
		"overflowing int": strings.Replace(string(good), `"v":1`, `"v":99999999999999999999`, 1),
	} {
		var e Event
		if fastDecode([]byte(data), &e) {
			t.Errorf("%s: fast decoder took %s", name, data)
		}
	}
}

// FuzzFastDecode checks that whatever the fast decoder takes, encoding/json
// takes too and decodes the same.
func FuzzFastDecode(f *testing.F) {
	for _, e := range append(fullEvents(), sidecarResponse()) {
		data, err := Encode(e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"v":1,"http_request":{"headers":{"a":null,"b":[],"c":["\u003c\/"]},"body":{"b64":""}}}`))
	// Long strings, for the word-at-a-time scan: an escape, multi-byte
	// UTF-8 and invalid UTF-8 at and across word boundaries.
	long := strings.Repeat("abcdefg", 6)
	for _, text := range []string{long + `\"` + long, long + "é" + long + "€" + long, long + "\xff" + long, "😀" + long + `\u00e9`} {
		f.Add([]byte(`{"v":1,"http_request":{"url":"` + text + `","body":{"size":123456789012345678,"text":"` + text + `"}}}`))
	}
	f.Fuzz(func(t *testing.T, data []byte) { sameDecode(t, data) })
}

// sameDecode fails if the fast decoder takes data and decodes it other
// than encoding/json does.
func sameDecode(t testing.TB, data []byte) {
	t.Helper()
	var fast Event
	if !fastDecode(data, &fast) {
		return
	}
	var want Event
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatalf("fast decoder took what encoding/json refuses (%v): %q", err, data)
	}
	if !reflect.DeepEqual(fast, want) {
		t.Fatalf("fast decoding differs from encoding/json for %q:\n got %+v\nwant %+v", data, fast, want)
	}
}

// sidecarResponse is an http.response as the sidecar records a JSON API's
// answer of about 1 KiB.
func sidecarResponse() *Event {
	e := New("062b4d61-9eb7-4638-ad57-d34e86710495", KindHTTPResponse, time.Date(2026, 11, 28, 16, 36, 2, 772000000, time.UTC))
	e.Seq = 1234
	e.Source = SourceSidecar
	e.Identity = &Identity{User: "alice@example.com", Namespace: "agents", Pod: "copilot-7d9f8-x2x4q", ServiceAccount: "copilot", Node: "node-3"}
	e.Dest = &Destination{Addr: "140.82.112.3:443", Host: "api.github.com", Protocol: "http1"}
	e.Conn = "c12-3"
	e.Verdict = "allow"
	item := `{"id":1296269,"name":"Hello-World","full_name":"octocat/Hello-World","private":false,"html_url":"https://github.com/octocat/Hello-World"},`
	text := "[" + strings.Repeat(item, 1024/len(item)) + "{}]"
	e.HTTPResponse = &HTTPResponse{
		Stream: 617, Proto: "HTTP/1.1", Status: 200,
		Headers: map[string][]string{
			"Content-Type": {"application/json; charset=utf-8"}, "Date": {"Sat, 28 Nov 2026 16:36:02 GMT"},
			"Content-Length": {strconv.Itoa(len(text))}, "Cache-Control": {"private, max-age=60, s-maxage=60"},
			"Etag": {`W/"5c9b1c0d5e3f"`}, "X-Github-Request-Id": {"C2E4:3F5A:1B2C3D:1C2D3E:6745A1B2"},
		},
		Body:    &Body{Size: int64(len(text)), Text: text, Recorded: int64(len(text))},
		Latency: 41 * time.Millisecond, Duration: 42 * time.Millisecond,
	}
	return e
}

func BenchmarkDecode(b *testing.B) {
	e := fullEvents()[3]
	e.HTTPResponse.Body = &Body{Size: 1024, Text: strings.Repeat("x", 1024), Recorded: 1024}
	e.Chain = nil
	data, err := Encode(e)
	if err != nil {
		b.Fatal(err)
	}
	sidecar, err := Encode(sidecarResponse())
	if err != nil {
		b.Fatal(err)
	}
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Decode(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sidecar-response", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Decode(sidecar); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var e Event
			if err := json.Unmarshal(data, &e); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestSetPayloads checks setPayloads against payloadField: setting each
// kind's field (by its name) makes exactly that kind show.
func TestSetPayloads(t *testing.T) {
	if len(payloadField) != reflect.TypeFor[Event]().NumField()-len(strings.Fields(envelopeFields)) {
		t.Fatalf("payloadField has %d kinds; Event has other payload fields", len(payloadField))
	}
	for k, name := range payloadField {
		var e Event
		f := reflect.ValueOf(&e).Elem().FieldByName(name)
		f.Set(reflect.New(f.Type().Elem()))
		if got := e.setPayloads(nil); len(got) != 1 || got[0] != k {
			t.Errorf("%s set: setPayloads = %v", name, got)
		}
	}
}

// envelopeFields are Event's fields that are not payloads.
const envelopeFields = "V ID Session Seq Time Kind Source Identity Dest Conn Masked Verdict Chain raw"

func TestValidSession(t *testing.T) {
	re := regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)
	for _, id := range []string{"", "a", "A-z_09", "a.b", "a b", "é", strings.Repeat("a", 128), strings.Repeat("a", 129), "a\x00", "-"} {
		if got, want := ValidSession(id) == nil, re.MatchString(id); got != want {
			t.Errorf("ValidSession(%q) ok = %v, want %v", id, got, want)
		}
	}
}

// TestInString8 checks the word-at-a-time string scan against the bytes
// it stands for: plain unless a quote, a backslash or a control character,
// ASCII unless a byte has its high bit set, whatever the other bytes are.
func TestInString8(t *testing.T) {
	for c := range 256 {
		wantPlain := c >= 0x20 && c != '"' && c != '\\'
		for p := range 8 {
			for _, fill := range []byte{'a', ' ', '~', 0x7f, 0x80, 0xc3, 0xff, '!', '#', '[', ']'} {
				w := bytes.Repeat([]byte{fill}, 8)
				w[p] = byte(c)
				plain, ascii := inString8(w)
				if plain != wantPlain {
					t.Fatalf("inString8(%q) plain = %v, want %v", w, plain, wantPlain)
				}
				if want := c < 0x80 && fill < 0x80; ascii != want {
					t.Fatalf("inString8(%q) ascii = %v, want %v", w, ascii, want)
				}
			}
		}
	}
}

// TestIntegers checks the decoder's integers against strconv at the edges
// of the fast path (18 digits) and of the sizes.
func TestIntegers(t *testing.T) {
	lits := []string{
		"0", "-0", "7", "-7", "2147483647", "2147483648", "-2147483648", "-2147483649",
		"999999999999999999", "-999999999999999999", "1000000000000000000", "-1000000000000000000",
		"9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809",
		"9999999999999999999", "18446744073709551615", "18446744073709551616", "99999999999999999999",
	}
	for _, lit := range lits {
		for _, bits := range []int{32, 64} {
			d := decoder{b: []byte(lit)}
			got, ok := d.int64(bits)
			want, err := strconv.ParseInt(lit, 10, bits)
			if ok != (err == nil) || (ok && got != want) {
				t.Errorf("int64(%s, %d) = %d, %v; strconv: %d, %v", lit, bits, got, ok, want, err)
			}
		}
		d := decoder{b: []byte(lit)}
		var got uint64
		ok := d.uint64(&got)
		want, err := strconv.ParseUint(lit, 10, 64)
		if ok != (err == nil) || (ok && got != want) {
			t.Errorf("uint64(%s) = %d, %v; strconv: %d, %v", lit, got, ok, want, err)
		}
	}
}
