package event

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// Encode returns the event's JSON.
func Encode(e *Event) ([]byte, error) {
	return AppendEncode(nil, e)
}

// AppendEncode appends the event's JSON to dst. The bytes are those
// encoding/json writes for the event, byte for byte: the events of the
// data path (connections, HTTP exchanges, Kubernetes requests, stream data)
// go through a hand-written encoder that allocates nothing and is several
// times faster; every other kind, and anything the fast encoder does not
// cover (a time outside RFC 3339's range), takes encoding/json.
func AppendEncode(dst []byte, e *Event) ([]byte, error) {
	if fastKind(e) {
		enc := encoder{b: dst}
		if enc.event(e) {
			return enc.b, nil
		}
	}
	b, err := json.Marshal(e)
	if err != nil {
		return dst, fmt.Errorf("encode event %s: %w", e.ID, err)
	}
	return append(dst, b...), nil
}

// fastKind reports whether every payload e carries has a hand-written
// encoding.
func fastKind(e *Event) bool {
	return e.SessionStart == nil && e.SessionEnd == nil && e.LLMPrompt == nil && e.LLMCompletion == nil &&
		e.SQLQuery == nil && e.SQLResult == nil && e.ProcessExec == nil && e.ProcessExit == nil &&
		e.PolicyDecision == nil && e.PolicyLoaded == nil && e.ApprovalRequested == nil && e.ApprovalDecided == nil &&
		e.MCPToolList == nil && e.MCPToolCall == nil
}

// encoder writes JSON the way encoding/json does for the types below:
// fields in declaration order, omitempty honoured, map keys sorted,
// strings with encoding/json's escaping (HTML characters, U+2028/U+2029
// and invalid UTF-8 included). A field added to one of these types must be
// added here too; TestFastEncoderFields fails until it is.
type encoder struct {
	b []byte
	// more is set once the current object has a member, so the next one
	// needs a comma. Objects nest, so each writer saves and restores it.
	more bool
}

func (w *encoder) open() bool {
	m := w.more
	w.b = append(w.b, '{')
	w.more = false
	return m
}

func (w *encoder) close(saved bool) {
	w.b = append(w.b, '}')
	w.more = saved
}

// key writes a member name; names are plain ASCII and need no escaping.
func (w *encoder) key(k string) {
	if w.more {
		w.b = append(w.b, ',')
	}
	w.more = true
	w.b = append(w.b, '"')
	w.b = append(w.b, k...)
	w.b = append(w.b, '"', ':')
}

func (w *encoder) str(k, v string) {
	w.key(k)
	w.b = appendString(w.b, v)
}

func (w *encoder) strOmit(k, v string) {
	if v != "" {
		w.str(k, v)
	}
}

func (w *encoder) int(k string, v int64) {
	w.key(k)
	w.b = strconv.AppendInt(w.b, v, 10)
}

func (w *encoder) intOmit(k string, v int64) {
	if v != 0 {
		w.int(k, v)
	}
}

func (w *encoder) uint(k string, v uint64) {
	w.key(k)
	w.b = strconv.AppendUint(w.b, v, 10)
}

func (w *encoder) boolOmit(k string, v bool) {
	if v {
		w.key(k)
		w.b = append(w.b, "true"...)
	}
}

func (w *encoder) strsOmit(k string, v []string) {
	if len(v) > 0 {
		w.key(k)
		w.b = appendStrings(w.b, v)
	}
}

func (w *encoder) event(e *Event) bool {
	saved := w.open()
	w.int("v", int64(e.V))
	w.str("id", e.ID)
	w.str("session", e.Session)
	w.uint("seq", e.Seq)
	w.key("time")
	var ok bool
	if w.b, ok = appendTime(w.b, e.Time); !ok {
		return false
	}
	w.str("kind", string(e.Kind))
	w.strOmit("source", string(e.Source))
	if id := e.Identity; id != nil {
		w.key("identity")
		s := w.open()
		w.strOmit("user", id.User)
		w.strsOmit("groups", id.Groups)
		w.strOmit("service_account", id.ServiceAccount)
		w.strOmit("namespace", id.Namespace)
		w.strOmit("pod", id.Pod)
		w.strOmit("pod_uid", id.PodUID)
		w.strOmit("node", id.Node)
		w.close(s)
	}
	if d := e.Dest; d != nil {
		w.key("dest")
		s := w.open()
		w.str("addr", d.Addr)
		w.strOmit("host", d.Host)
		w.strOmit("protocol", d.Protocol)
		w.close(s)
	}
	w.strOmit("conn", e.Conn)
	w.strsOmit("masked", e.Masked)
	w.strOmit("verdict", e.Verdict)
	if c := e.ConnOpen; c != nil {
		w.key("conn_open")
		s := w.open()
		w.strOmit("client", c.Client)
		w.strOmit("refused", c.Refused)
		w.tls(c.TLS)
		w.close(s)
	}
	if c := e.ConnClose; c != nil {
		w.key("conn_close")
		s := w.open()
		w.int("bytes_up", c.BytesUp)
		w.int("bytes_down", c.BytesDown)
		w.int("duration_ns", int64(c.Duration))
		w.strOmit("error", c.Error)
		w.tls(c.TLS)
		w.close(s)
	}
	if r := e.HTTPRequest; r != nil {
		w.key("http_request")
		s := w.open()
		w.uint("stream", r.Stream)
		w.str("proto", r.Proto)
		w.str("method", r.Method)
		w.str("url", r.URL)
		w.strOmit("host", r.Host)
		w.headers("headers", r.Headers)
		w.body("body", r.Body)
		w.grpc(r.GRPC)
		w.close(s)
	}
	if r := e.HTTPResponse; r != nil {
		w.key("http_response")
		s := w.open()
		w.uint("stream", r.Stream)
		w.str("proto", r.Proto)
		w.int("status", int64(r.Status))
		w.headers("headers", r.Headers)
		w.body("body", r.Body)
		w.int("latency_ns", int64(r.Latency))
		w.int("duration_ns", int64(r.Duration))
		w.strOmit("error", r.Error)
		w.headers("trailers", r.Trailers)
		w.strOmit("streamed", r.Streamed)
		w.grpc(r.GRPC)
		w.close(s)
	}
	if k := e.K8sRequest; k != nil {
		w.key("k8s_request")
		s := w.open()
		w.uint("stream", k.Stream)
		w.str("verb", k.Verb)
		w.strOmit("api_group", k.APIGroup)
		w.strOmit("api_version", k.APIVersion)
		w.strOmit("resource", k.Resource)
		w.strOmit("subresource", k.Subresource)
		w.strOmit("namespace", k.Namespace)
		w.strOmit("name", k.Name)
		w.intOmit("status", int64(k.Status))
		w.strOmit("as", k.As)
		w.close(s)
	}
	if d := e.StreamData; d != nil {
		w.key("stream_data")
		s := w.open()
		w.str("stream", d.Stream)
		w.str("channel", d.Channel)
		w.body("data", d.Data)
		w.intOmit("width", int64(d.Width))
		w.intOmit("height", int64(d.Height))
		if d.Exit != nil {
			w.int("exit", int64(*d.Exit))
		}
		w.close(s)
	}
	if c := e.Chain; c != nil {
		w.key("chain")
		s := w.open()
		w.uint("index", c.Index)
		w.strOmit("prev", c.Prev)
		w.str("hash", c.Hash)
		w.close(s)
	}
	w.close(saved)
	return true
}

func (w *encoder) tls(t *TLSInfo) {
	if t == nil {
		return
	}
	w.key("tls")
	s := w.open()
	w.strOmit("sni", t.SNI)
	w.strsOmit("alpn", t.ALPN)
	w.boolOmit("intercepted", t.Intercepted)
	w.strOmit("version", t.Version)
	w.strOmit("cipher", t.Cipher)
	w.strOmit("protocol", t.Protocol)
	w.close(s)
}

func (w *encoder) body(k string, b *Body) {
	if b == nil {
		return
	}
	w.key(k)
	s := w.open()
	w.int("size", b.Size)
	w.strOmit("text", b.Text)
	if len(b.B64) > 0 {
		w.key("b64")
		w.b = append(w.b, '"')
		w.b = base64.StdEncoding.AppendEncode(w.b, b.B64)
		w.b = append(w.b, '"')
	}
	w.strOmit("ref", b.Ref)
	w.int("recorded", b.Recorded)
	w.boolOmit("truncated", b.Truncated)
	w.close(s)
}

func (w *encoder) grpc(g *GRPCInfo) {
	if g == nil {
		return
	}
	w.key("grpc")
	s := w.open()
	w.strOmit("service", g.Service)
	w.strOmit("method", g.Method)
	if g.Status != nil {
		w.int("status", int64(*g.Status))
	}
	w.strOmit("message", g.Message)
	w.intOmit("messages", g.Messages)
	if len(g.Sizes) > 0 {
		w.key("sizes")
		w.b = append(w.b, '[')
		for i, n := range g.Sizes {
			if i > 0 {
				w.b = append(w.b, ',')
			}
			w.b = strconv.AppendInt(w.b, n, 10)
		}
		w.b = append(w.b, ']')
	}
	w.close(s)
}

// headers writes a header map with sorted keys; a nil value list is null,
// as encoding/json writes it.
func (w *encoder) headers(k string, h map[string][]string) {
	if len(h) == 0 {
		return
	}
	w.key(k)
	var arr [32]string
	keys := arr[:0]
	for name := range h {
		keys = append(keys, name)
	}
	slices.Sort(keys)
	w.b = append(w.b, '{')
	for i, name := range keys {
		if i > 0 {
			w.b = append(w.b, ',')
		}
		w.b = appendString(w.b, name)
		w.b = append(w.b, ':')
		w.b = appendStrings(w.b, h[name])
	}
	w.b = append(w.b, '}')
}

// appendStrings writes a string list; nil is null.
func appendStrings(b []byte, v []string) []byte {
	if v == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, s := range v {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

// appendTime writes t as time.Time's MarshalJSON does; ok is false for the
// times MarshalJSON refuses (a year outside [0,9999], an offset of a day or
// more), so that the caller falls back to encoding/json and its error.
func appendTime(b []byte, t time.Time) ([]byte, bool) {
	if y := t.Year(); y < 0 || y > 9999 {
		return b, false
	}
	if _, off := t.Zone(); off <= -24*3600 || off >= 24*3600 {
		return b, false
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), true
}

// safeASCII marks the ASCII bytes encoding/json copies into a string as
// they are: printable, and neither a quote, a backslash nor one of the
// HTML characters <, > and &.
var safeASCII = func() (t [utf8.RuneSelf]bool) {
	for c := ' '; c < utf8.RuneSelf; c++ {
		t[c] = true
	}
	for _, c := range `"\<>&` {
		t[c] = false
	}
	return t
}()

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string with encoding/json's escaping.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		// Skip runs of eight bytes that need no escaping at once: most of
		// a recorded body or header is plain ASCII.
		for i+8 <= len(s) && plain8(s[i:]) {
			i += 8
		}
		if i >= len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			if safeASCII[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// plain8 reports whether the first eight bytes of s are all safeASCII:
// none below 0x20 or above 0x7f, and none of " \\ < > &. It tests them
// as one word (a byte-wise "has zero" test per excluded character).
func plain8(s string) bool {
	_ = s[7]
	x := uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	q, bs, lt, gt, amp := x^(lo*'"'), x^(lo*'\\'), x^(lo*'<'), x^(lo*'>'), x^(lo*'&')
	bad := x | // non-ASCII
		(x-lo*0x20)&^x | // control characters
		(q-lo)&^q | (bs-lo)&^bs | (lt-lo)&^lt | (gt-lo)&^gt | (amp-lo)&^amp // "has a zero byte"
	return bad&hi == 0
}
