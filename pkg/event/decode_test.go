package event

import (
	"encoding/json"
	"reflect"
	"regexp"
	"strings"
	"testing"
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
	for _, e := range fullEvents() {
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
	for _, e := range fullEvents() {
		data, err := Encode(e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"v":1,"http_request":{"headers":{"a":null,"b":[],"c":["\u003c\/"]},"body":{"b64":""}}}`))
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

func BenchmarkDecode(b *testing.B) {
	e := fullEvents()[3]
	e.HTTPResponse.Body = &Body{Size: 1024, Text: strings.Repeat("x", 1024), Recorded: 1024}
	e.Chain = nil
	data, err := Encode(e)
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
