package event

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// fastEncode runs the hand-written encoder alone, failing if it declines.
func fastEncode(t testing.TB, e *Event) []byte {
	t.Helper()
	if !fastKind(e) {
		t.Fatalf("%s is not a fast kind", e.Kind)
	}
	w := encoder{}
	if !w.event(e) {
		t.Fatalf("fast encoder declined %+v", e)
	}
	return w.b
}

// checkSameAsJSON fails unless the fast encoder writes what encoding/json
// writes for e.
func checkSameAsJSON(t testing.TB, e *Event) {
	t.Helper()
	want, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if got := fastEncode(t, e); !bytes.Equal(got, want) {
		t.Fatalf("fast encoding differs from encoding/json:\n got %s\nwant %s", got, want)
	}
	viaEncode, err := Encode(e)
	if err != nil || !bytes.Equal(viaEncode, want) {
		t.Fatalf("Encode = %s, %v; want %s", viaEncode, err, want)
	}
	// And back: when the fast decoder takes it (it declines, say, the
	// duplicate names two invalid UTF-8 header names become), it agrees
	// with encoding/json.
	sameDecode(t, want)
}

const nasty = "a\"b\\c<d>e&f\x00\x01\x1f\b\f\n\r\t\x7f é \u2028 \u2029 \xff\xfe 𝄞 end"

func fullEvents() []*Event {
	t0 := time.Date(2026, 11, 28, 12, 0, 0, 120000000, time.FixedZone("x", -7*3600-30*60))
	status, exit := 14, 137
	id := &Identity{User: "alice" + nasty, Groups: []string{"dev", "", nasty}, ServiceAccount: "sa",
		Namespace: "ns", Pod: "p", PodUID: "uid", Node: "n1"}
	dest := &Destination{Addr: "10.0.0.1:443", Host: "api.example.com", Protocol: "http1"}
	tls := &TLSInfo{SNI: "api.example.com", ALPN: []string{"h2", "http/1.1"}, Intercepted: true,
		Version: "TLS 1.3", Cipher: "TLS_AES_128_GCM_SHA256", Protocol: "h2"}
	body := &Body{Size: 1 << 40, Text: nasty, Recorded: 12, Truncated: true}
	env := func(k Kind) *Event {
		e := New("sess-1", k, t0)
		e.Seq = 1<<63 + 5
		e.Source = SourceSidecar
		e.Identity = id
		e.Dest = dest
		e.Conn = "c-1"
		e.Masked = []string{"aws-key", nasty}
		e.Verdict = "allow"
		e.Chain = &Chain{Index: 9, Prev: "00ff", Hash: "abcd"}
		return e
	}
	var out []*Event
	e := env(KindConnOpen)
	e.ConnOpen = &ConnOpen{Client: "10.0.0.2:5555", Refused: nasty, TLS: tls}
	out = append(out, e)
	e = env(KindConnClose)
	e.ConnClose = &ConnClose{BytesUp: -1, BytesDown: 1 << 62, Duration: time.Hour, Error: nasty, TLS: &TLSInfo{}}
	out = append(out, e)
	e = env(KindHTTPRequest)
	e.HTTPRequest = &HTTPRequest{Stream: 3, Proto: "HTTP/1.1", Method: "POST", URL: "/a?b=<c>&d", Host: nasty,
		Headers: map[string][]string{"Z": {"1"}, "A": {"x", nasty}, "Nil": nil, "Empty": {}, nasty: {""}, "a": {"lower"}},
		Body:    body,
		GRPC:    &GRPCInfo{Service: "pkg.Svc", Method: "Call", Status: &status, Message: nasty, Messages: 3, Sizes: []int64{1, 0, -2}}}
	out = append(out, e)
	e = env(KindHTTPResponse)
	e.HTTPResponse = &HTTPResponse{Stream: 3, Proto: "HTTP/2.0", Status: 200,
		Headers: map[string][]string{"Content-Type": {"application/json"}},
		Body:    &Body{Size: 4, B64: []byte{0, 1, 2, 255}, Recorded: 4},
		Latency: 5, Duration: -7, Error: nasty, Trailers: map[string][]string{"Grpc-Status": {"0"}},
		Streamed: StreamedEnd, GRPC: &GRPCInfo{}}
	out = append(out, e)
	e = env(KindHTTPResponse)
	e.HTTPResponse = &HTTPResponse{Stream: 4, Proto: "HTTP/1.1", Status: 204, Body: &Body{Size: 9, Ref: "sha256:ab", Recorded: 9}}
	out = append(out, e)
	e = env(KindK8sRequest)
	e.K8sRequest = &K8sRequest{Stream: 1, Verb: "get", APIGroup: "apps", APIVersion: "v1", Resource: "deployments",
		Subresource: "scale", Namespace: "ns", Name: nasty, Status: 403, As: "system:serviceaccount:a:b"}
	out = append(out, e)
	e = env(KindStreamData)
	e.StreamData = &StreamData{Stream: "exec-1", Channel: "stdout", Data: body, Width: 80, Height: 24, Exit: &exit}
	out = append(out, e)
	// Minimal envelopes: every omitempty field empty, zero numbers.
	e = &Event{V: Version, ID: "01J00000000000000000000000", Session: "s", Time: time.Unix(0, 0).UTC(), Kind: KindConnClose,
		ConnClose: &ConnClose{}}
	out = append(out, e)
	e = &Event{V: Version, ID: "01J00000000000000000000000", Session: "s", Time: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		Kind: KindHTTPRequest, HTTPRequest: &HTTPRequest{}, Identity: &Identity{Groups: []string{}}, Dest: &Destination{},
		Masked: []string{}}
	out = append(out, e)
	e = &Event{Kind: KindStreamData, StreamData: &StreamData{Data: &Body{}}, Time: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.FixedZone("", 23*3600+59*60))}
	out = append(out, e)
	return out
}

func TestFastEncoderMatchesJSON(t *testing.T) {
	for _, e := range fullEvents() {
		t.Run(string(e.Kind), func(t *testing.T) { checkSameAsJSON(t, e) })
	}
}

func TestEncodeFallsBack(t *testing.T) {
	// Other kinds go through encoding/json.
	e := New("s", KindSessionStart, time.Now())
	e.SessionStart = &SessionStart{Origin: "run", Labels: map[string]string{"b": "1", "a": nasty}}
	want, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := Encode(e); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("Encode = %s, %v; want %s", got, err, want)
	}
	// A time RFC 3339 cannot hold fails as encoding/json fails.
	for _, tm := range []time.Time{
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("", 24*3600)),
	} {
		e := &Event{V: Version, Time: tm, Kind: KindConnOpen, ConnOpen: &ConnOpen{}}
		if _, err := Encode(e); err == nil {
			t.Errorf("time %v encoded without error", tm)
		}
	}
	// AppendEncode appends.
	e = fullEvents()[0]
	b, err := AppendEncode([]byte("prefix"), e)
	if err != nil || !bytes.HasPrefix(b, []byte("prefix{")) {
		t.Fatalf("AppendEncode = %.20s, %v", b, err)
	}
}

// TestFastEncoderFields pins the fields the hand-written encoder knows. A
// field added to one of these types fails here until encoder writes it
// (and this list names it).
func TestFastEncoderFields(t *testing.T) {
	known := map[reflect.Type]string{
		reflect.TypeFor[Identity]():     "user,omitempty groups,omitempty service_account,omitempty namespace,omitempty pod,omitempty pod_uid,omitempty node,omitempty",
		reflect.TypeFor[Destination]():  "addr host,omitempty protocol,omitempty",
		reflect.TypeFor[Chain]():        "index prev,omitempty hash",
		reflect.TypeFor[Body]():         "size text,omitempty b64,omitempty ref,omitempty recorded truncated,omitempty",
		reflect.TypeFor[ConnOpen]():     "client,omitempty refused,omitempty tls,omitempty",
		reflect.TypeFor[ConnClose]():    "bytes_up bytes_down duration_ns error,omitempty tls,omitempty",
		reflect.TypeFor[TLSInfo]():      "sni,omitempty alpn,omitempty intercepted,omitempty version,omitempty cipher,omitempty protocol,omitempty",
		reflect.TypeFor[HTTPRequest]():  "stream proto method url host,omitempty headers,omitempty body,omitempty grpc,omitempty",
		reflect.TypeFor[HTTPResponse](): "stream proto status headers,omitempty body,omitempty latency_ns duration_ns error,omitempty trailers,omitempty streamed,omitempty grpc,omitempty",
		reflect.TypeFor[GRPCInfo]():     "service,omitempty method,omitempty status,omitempty message,omitempty messages,omitempty sizes,omitempty",
		reflect.TypeFor[K8sRequest]():   "stream verb api_group,omitempty api_version,omitempty resource,omitempty subresource,omitempty namespace,omitempty name,omitempty status,omitempty as,omitempty",
		reflect.TypeFor[StreamData]():   "stream channel data,omitempty width,omitempty height,omitempty exit,omitempty",
	}
	for typ, want := range known {
		var tags []string
		for f := range typ.Fields() {
			tags = append(tags, f.Tag.Get("json"))
		}
		if got := strings.Join(tags, " "); got != want {
			t.Errorf("%s fields changed; update encoder and this list:\n got %s\nwant %s", typ.Name(), got, want)
		}
	}
	// Event: the envelope the encoder writes, then the payloads, with the
	// ones fastKind sends to encoding/json.
	var tags []string
	for f := range reflect.TypeFor[Event]().Fields() {
		if f.IsExported() {
			tags = append(tags, f.Tag.Get("json"))
		}
	}
	want := "v id session seq time kind source,omitempty identity,omitempty dest,omitempty conn,omitempty masked,omitempty verdict,omitempty " +
		"session_start,omitempty session_end,omitempty conn_open,omitempty conn_close,omitempty http_request,omitempty http_response,omitempty " +
		"k8s_request,omitempty stream_data,omitempty llm_prompt,omitempty llm_completion,omitempty sql_query,omitempty sql_result,omitempty " +
		"process_exec,omitempty process_exit,omitempty policy_decision,omitempty policy_loaded,omitempty approval_requested,omitempty approval_decided,omitempty " +
		"mcp_tool_list,omitempty mcp_tool_call,omitempty chain,omitempty"
	if got := strings.Join(tags, " "); got != want {
		t.Errorf("Event fields changed; update encoder, fastKind and this list:\n got %s\nwant %s", got, want)
	}
}

// FuzzFastEncoder feeds arbitrary strings, numbers and bytes through every
// fast kind and compares with encoding/json.
func FuzzFastEncoder(f *testing.F) {
	f.Add("GET", "/x", nasty, "h", []byte{0, 1}, int64(7), uint64(3), int64(1e18))
	f.Add("", "", "", "", []byte(nil), int64(0), uint64(0), int64(-1))
	f.Add("\u2028", "<script>", "\xed\xa0\x80", "ü", []byte("abc"), int64(-1<<63), uint64(1<<64-1), int64(1<<63-1))
	f.Fuzz(func(t *testing.T, s1, s2, s3, s4 string, raw []byte, n int64, u uint64, nanos int64) {
		tm := time.Unix(0, nanos).UTC()
		if y := tm.Year(); y < 0 || y > 9999 {
			tm = time.Unix(0, 0)
		}
		base := func(k Kind) *Event {
			return &Event{V: int(n % 3), ID: s1, Session: s2, Seq: u, Time: tm, Kind: k, Source: Source(s3),
				Identity: &Identity{User: s4, Groups: []string{s1, s3}}, Dest: &Destination{Addr: s2, Host: s3},
				Conn: s4, Masked: []string{s3}, Verdict: s1}
		}
		body := &Body{Size: n, Text: s3, B64: raw, Ref: s4, Recorded: int64(u >> 1), Truncated: n%2 == 0}
		hdr := map[string][]string{s1: {s2, s3}, s4: nil, s3: {}}
		st := int(n)
		events := []*Event{base(KindConnOpen), base(KindConnClose), base(KindHTTPRequest), base(KindHTTPResponse), base(KindK8sRequest), base(KindStreamData)}
		events[0].ConnOpen = &ConnOpen{Client: s1, Refused: s2, TLS: &TLSInfo{SNI: s3, ALPN: []string{s4}}}
		events[1].ConnClose = &ConnClose{BytesUp: n, BytesDown: int64(u), Duration: time.Duration(nanos), Error: s4}
		events[2].HTTPRequest = &HTTPRequest{Stream: u, Proto: s1, Method: s2, URL: s3, Host: s4, Headers: hdr, Body: body,
			GRPC: &GRPCInfo{Service: s1, Status: &st, Sizes: []int64{n}}}
		events[3].HTTPResponse = &HTTPResponse{Stream: u, Proto: s4, Status: st, Headers: hdr, Body: body, Latency: time.Duration(n),
			Error: s1, Trailers: hdr, Streamed: s2}
		events[4].K8sRequest = &K8sRequest{Stream: u, Verb: s1, Resource: s2, Name: s3, Status: st, As: s4}
		events[5].StreamData = &StreamData{Stream: s1, Channel: s2, Data: body, Width: st, Exit: &st}
		distinct := s1 != s3 && s1 != s4 && s3 != s4
		valid := utf8.ValidString(s1) && utf8.ValidString(s2) && utf8.ValidString(s3) && utf8.ValidString(s4)
		for _, e := range events {
			checkSameAsJSON(t, e)
			if distinct && valid {
				// Nothing here for the fast decoder to decline.
				data, _ := Encode(e)
				checkFastDecode(t, data)
			}
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	e := fullEvents()[3]
	e.HTTPResponse.Body = &Body{Size: 1024, Text: strings.Repeat("x", 1024), Recorded: 1024}
	e.HTTPResponse.Headers = map[string][]string{"Content-Type": {"text/plain"}, "Date": {"Mon, 30 Nov 2026 02:19:05 GMT"}, "Content-Length": {"1024"}}
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf, _ = AppendEncode(buf[:0], e)
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = json.Marshal(e)
		}
	})
}

func TestPlain8(t *testing.T) {
	for c := range 256 {
		want := c < 0x80 && safeASCII[c]
		for p := range 8 {
			for _, fill := range []byte{'a', ' ', '~', 0x7f} {
				w := bytes.Repeat([]byte{fill}, 8)
				w[p] = byte(c)
				if got := plain8(string(w)); got != want {
					t.Fatalf("plain8(%q) = %v, want %v", w, got, want)
				}
			}
		}
	}
}
