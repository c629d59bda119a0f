package event

import (
	"encoding/base64"
	"encoding/binary"
	"strconv"
	"unicode/utf8"
)

// fastDecode decodes the JSON that AppendEncode writes for the data-path
// kinds into e, without reflection. It is strict: members in any order but
// each at most once, no whitespace, no member it does not know, no null
// but in a header's value list, only escapes encoding/json itself writes,
// valid UTF-8. Whenever it returns true, e holds exactly what
// json.Unmarshal would have decoded (FuzzFastDecode checks this); on false,
// e may be partly filled and the caller decodes again with encoding/json,
// which accepts or refuses the rest, so Decode's answer never depends on
// which decoder ran.
func fastDecode(data []byte, e *Event) bool {
	d := decoder{b: data}
	if !d.event(e) {
		return false
	}
	return d.i == len(d.b)
}

type decoder struct {
	b []byte
	i int
}

func (d *decoder) next(c byte) bool {
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

func (d *decoder) peek() byte {
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

// object decodes an object, calling member for each member name with the
// decoder positioned at its value. Names are plain ASCII without escapes;
// seen catches a name given twice (member returns the name's bit, 0 for
// an unknown name).
func (d *decoder) object(member func(name []byte) uint64) bool {
	if !d.next('{') {
		return false
	}
	if d.next('}') {
		return true
	}
	var seen uint64
	for {
		name, ok := d.name()
		if !ok || !d.next(':') {
			return false
		}
		bit := member(name)
		if bit == 0 || seen&bit != 0 {
			return false
		}
		seen |= bit
		if d.next(',') {
			continue
		}
		return d.next('}')
	}
}

// name reads a member name made of the characters the schema's names use.
func (d *decoder) name() ([]byte, bool) {
	if !d.next('"') {
		return nil, false
	}
	start := d.i
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			n := d.b[start:d.i]
			d.i++
			return n, true
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '_':
			d.i++
		default:
			return nil, false
		}
	}
	return nil, false
}

// str decodes a string. It returns false for anything encoding/json would
// decode differently or refuse: invalid UTF-8, a raw control character,
// an unknown escape or a UTF-16 surrogate escape.
func (d *decoder) str() (string, bool) {
	if !d.next('"') {
		return "", false
	}
	start := d.i
	ascii := true
	for d.i < len(d.b) {
		// Bodies and headers are long runs of plain text: skip them eight
		// bytes at a time.
		if d.i+8 <= len(d.b) {
			if plain, asc := inString8(d.b[d.i:]); plain {
				ascii = ascii && asc
				d.i += 8
				continue
			}
		}
		c := d.b[d.i]
		switch {
		case c == '"':
			s := d.b[start:d.i]
			d.i++
			if !ascii && !utf8.Valid(s) {
				return "", false
			}
			return string(s), true
		case c == '\\':
			return d.strEscaped(start)
		case c < ' ':
			return "", false
		case c >= utf8.RuneSelf:
			ascii = false
		}
		d.i++
	}
	return "", false
}

// inString8 reports whether none of the first eight bytes of b ends a string
// or needs a look (a quote, a backslash or a control character), and
// whether all of them are ASCII. It tests them as one word: a byte-wise
// "less than" for the control characters and "has a zero byte" for the
// other two, each exact as a whole.
func inString8(b []byte) (plain, ascii bool) {
	x := binary.LittleEndian.Uint64(b)
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	q, bs := x^(lo*'"'), x^(lo*'\\')
	bad := (x-lo*0x20)&^x | (q-lo)&^q | (bs-lo)&^bs
	return bad&hi == 0, x&hi == 0
}

// strEscaped finishes a string that has escapes, from its start.
func (d *decoder) strEscaped(start int) (string, bool) {
	out := make([]byte, 0, d.i-start+16)
	out = append(out, d.b[start:d.i]...)
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			if !utf8.Valid(out) {
				return "", false
			}
			return string(out), true
		case c < ' ':
			return "", false
		case c != '\\':
			out = append(out, c)
			d.i++
			continue
		}
		if d.i+1 >= len(d.b) {
			return "", false
		}
		esc := d.b[d.i+1]
		d.i += 2
		switch esc {
		case '"', '\\', '/':
			out = append(out, esc)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			if d.i+4 > len(d.b) {
				return "", false
			}
			var r rune
			for _, h := range d.b[d.i : d.i+4] {
				var v byte
				switch {
				case '0' <= h && h <= '9':
					v = h - '0'
				case 'a' <= h && h <= 'f':
					v = h - 'a' + 10
				case 'A' <= h && h <= 'F':
					v = h - 'A' + 10
				default:
					return "", false
				}
				r = r<<4 | rune(v)
			}
			if 0xd800 <= r && r < 0xe000 {
				return "", false // surrogates: leave the pairing rules to encoding/json
			}
			d.i += 4
			out = utf8.AppendRune(out, r)
		default:
			return "", false
		}
	}
	return "", false
}

// rawString returns the literal of a string, quotes included, without
// decoding it (for time.Time's UnmarshalJSON, which gets the same bytes
// from encoding/json).
func (d *decoder) rawString() ([]byte, bool) {
	start := d.i
	if !d.next('"') {
		return nil, false
	}
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case '"':
			d.i++
			return d.b[start:d.i], true
		case '\\':
			return nil, false
		}
		d.i++
	}
	return nil, false
}

// digits reads an integer literal as JSON writes it: an optional minus
// (when signed), then 0 or digits without a leading zero. A fraction or
// exponent is left unread, so the caller's next check fails.
func (d *decoder) digits(signed bool) ([]byte, bool) {
	start := d.i
	if signed {
		d.next('-')
	}
	first := d.i
	for d.i < len(d.b) && '0' <= d.b[d.i] && d.b[d.i] <= '9' {
		d.i++
	}
	n := d.i - first
	if n == 0 || (n > 1 && d.b[first] == '0') {
		return nil, false
	}
	if c := d.peek(); c == '.' || c == 'e' || c == 'E' {
		return nil, false
	}
	return d.b[start:d.i], true
}

// maxExact is the most decimal digits accumulated in a uint64 that
// cannot overflow it.
const maxExact = 19

// exact returns the value of at most maxExact decimal digits.
func exact(digits []byte) uint64 {
	var v uint64
	for _, c := range digits {
		v = v*10 + uint64(c-'0')
	}
	return v
}

func (d *decoder) int64(bits int) (int64, bool) {
	lit, ok := d.digits(true)
	if !ok {
		return 0, false
	}
	// Literals of up to 18 digits (every size, duration and status of a
	// real event) are summed up here: strconv would need a string, one
	// allocation a number.
	mag, neg := lit, lit[0] == '-'
	if neg {
		mag = lit[1:]
	}
	if len(mag) < maxExact {
		v := int64(exact(mag)) // < 10^18 < 2^63
		if neg {
			v = -v
		}
		if bits < 64 {
			lim := int64(1) << (bits - 1)
			return v, -lim <= v && v < lim
		}
		return v, true
	}
	v, err := strconv.ParseInt(string(lit), 10, bits)
	return v, err == nil
}

func (d *decoder) int(dst *int) bool {
	v, ok := d.int64(strconv.IntSize)
	*dst = int(v)
	return ok
}

func (d *decoder) uint64(dst *uint64) bool {
	lit, ok := d.digits(false)
	if !ok {
		return false
	}
	if len(lit) <= maxExact {
		*dst = exact(lit)
		return true
	}
	v, err := strconv.ParseUint(string(lit), 10, 64)
	*dst = v
	return err == nil
}

func (d *decoder) i64(dst *int64) bool {
	v, ok := d.int64(64)
	*dst = v
	return ok
}

func (d *decoder) bool(dst *bool) bool {
	switch {
	case d.lit("true"):
		*dst = true
		return true
	case d.lit("false"):
		*dst = false
		return true
	}
	return false
}

func (d *decoder) lit(s string) bool {
	if len(d.b)-d.i >= len(s) && string(d.b[d.i:d.i+len(s)]) == s {
		d.i += len(s)
		return true
	}
	return false
}

func (d *decoder) string(dst *string) bool {
	s, ok := d.str()
	*dst = s
	return ok
}

// strings decodes an array of strings; [] is an empty, non-nil slice and
// null (when nullOK) a nil one, as encoding/json decodes them.
func (d *decoder) strings(dst *[]string, nullOK bool) bool {
	if nullOK && d.lit("null") {
		*dst = nil
		return true
	}
	if !d.next('[') {
		return false
	}
	out := []string{}
	if !d.next(']') {
		for {
			s, ok := d.str()
			if !ok {
				return false
			}
			out = append(out, s)
			if d.next(',') {
				continue
			}
			if !d.next(']') {
				return false
			}
			break
		}
	}
	*dst = out
	return true
}

func (d *decoder) headers(dst *map[string][]string) bool {
	if !d.next('{') {
		return false
	}
	h := map[string][]string{}
	if !d.next('}') {
		for {
			k, ok := d.str()
			if !ok || !d.next(':') {
				return false
			}
			if _, dup := h[k]; dup {
				return false
			}
			var v []string
			if !d.strings(&v, true) {
				return false
			}
			h[k] = v
			if d.next(',') {
				continue
			}
			if !d.next('}') {
				return false
			}
			break
		}
	}
	*dst = h
	return true
}

// bit numbers a struct's members for object's duplicate check.
func bit(i int) uint64 { return 1 << i }

func (d *decoder) event(e *Event) bool {
	ok := true
	return d.object(func(name []byte) uint64 {
		// No allocation: a switch on string(bytes) compares in place.
		switch string(name) {
		case "v":
			return member(&ok, bit(0), d.int(&e.V))
		case "id":
			return member(&ok, bit(1), d.string(&e.ID))
		case "session":
			return member(&ok, bit(2), d.string(&e.Session))
		case "seq":
			return member(&ok, bit(3), d.uint64(&e.Seq))
		case "time":
			raw, rok := d.rawString()
			return member(&ok, bit(4), rok && e.Time.UnmarshalJSON(raw) == nil)
		case "kind":
			var s string
			rok := d.string(&s)
			e.Kind = Kind(s)
			return member(&ok, bit(5), rok)
		case "source":
			var s string
			rok := d.string(&s)
			e.Source = Source(s)
			return member(&ok, bit(6), rok)
		case "identity":
			e.Identity = &Identity{}
			return member(&ok, bit(7), d.identity(e.Identity))
		case "dest":
			e.Dest = &Destination{}
			return member(&ok, bit(8), d.dest(e.Dest))
		case "conn":
			return member(&ok, bit(9), d.string(&e.Conn))
		case "masked":
			return member(&ok, bit(10), d.strings(&e.Masked, false))
		case "verdict":
			return member(&ok, bit(11), d.string(&e.Verdict))
		case "conn_open":
			e.ConnOpen = &ConnOpen{}
			return member(&ok, bit(12), d.connOpen(e.ConnOpen))
		case "conn_close":
			e.ConnClose = &ConnClose{}
			return member(&ok, bit(13), d.connClose(e.ConnClose))
		case "http_request":
			e.HTTPRequest = &HTTPRequest{}
			return member(&ok, bit(14), d.httpRequest(e.HTTPRequest))
		case "http_response":
			e.HTTPResponse = &HTTPResponse{}
			return member(&ok, bit(15), d.httpResponse(e.HTTPResponse))
		case "k8s_request":
			e.K8sRequest = &K8sRequest{}
			return member(&ok, bit(16), d.k8sRequest(e.K8sRequest))
		case "stream_data":
			e.StreamData = &StreamData{}
			return member(&ok, bit(17), d.streamData(e.StreamData))
		case "chain":
			e.Chain = &Chain{}
			return member(&ok, bit(18), d.chain(e.Chain))
		}
		return 0
	}) && ok
}

// member wraps a struct decoder's switch: it turns a failed value into an
// unknown member, which ends the object.
func member(ok *bool, b uint64, valid bool) uint64 {
	if !valid {
		*ok = false
		return 0
	}
	return b
}

func (d *decoder) identity(id *Identity) bool {
	ok := true
	return d.object(func(name []byte) uint64 {
		switch string(name) {
		case "user":
			return member(&ok, bit(0), d.string(&id.User))
		case "groups":
			return member(&ok, bit(1), d.strings(&id.Groups, false))
		case "service_account":
			return member(&ok, bit(2), d.string(&id.ServiceAccount))
		case "namespace":
			return member(&ok, bit(3), d.string(&id.Namespace))
		case "pod":
			return member(&ok, bit(4), d.string(&id.Pod))
		case "pod_uid":
			return member(&ok, bit(5), d.string(&id.PodUID))
		case "node":
			return member(&ok, bit(6), d.string(&id.Node))
		}
		return 0
	}) && ok
}

func (d *decoder) dest(x *Destination) bool {
	ok := true
	return d.object(func(name []byte) uint64 {
		switch string(name) {
		case "addr":
			return member(&ok, bit(0), d.string(&x.Addr))
		case "host":
			return member(&ok, bit(1), d.string(&x.Host))
		case "protocol":
			return member(&ok, bit(2), d.string(&x.Protocol))
		}
		return 0
	}) && ok
}

func (d *decoder) chain(c *Chain) bool {
	ok := true
	return d.object(func(name []byte) uint64 {
		switch string(name) {
		case "index":
			return member(&ok, bit(0), d.uint64(&c.Index))
		case "prev":
			return member(&ok, bit(1), d.string(&c.Prev))
		case "hash":
			return member(&ok, bit(2), d.string(&c.Hash))
		}
		return 0
	}) && ok
}

func (d *decoder) tls(dst **TLSInfo) bool {
	t := &TLSInfo{}
	*dst = t
	ok := true
	return d.object(func(name []byte) uint64 {
		switch string(name) {
		case "sni":
			return member(&ok, bit(0), d.string(&t.SNI))
		case "alpn":
			return member(&ok, bit(1), d.strings(&t.ALPN, false))
		case "intercepted":
			return member(&ok, bit(2), d.bool(&t.Intercepted))
		case "version":
			return member(&ok, bit(3), d.string(&t.Version))
		case "cipher":
			return member(&ok, bit(4), d.string(&t.Cipher))
		case "protocol":
			return member(&ok, bit(5), d.string(&t.Protocol))
		}
		return 0
	}) && ok
}

func (d *decoder) connOpen(c *ConnOpen) bool {
	ok := true
	return d.object(func(name []byte) uint64 {
		switch string(name) {
		case "client":
			return member(&ok, bit(0), d.string(&c.Client))
		case "refused":
			return member(&ok, bit(1), d.string(&c.Refused))
		case "tls":
			return member(&ok, bit(2), d.tls(&c.TLS))
		}
		return 0
	}) && ok
}

func (d *decoder) connClose(c *ConnClose) bool {
	ok := true
	return d.object(func(name []byte) uint64 {
		switch string(name) {
		case "bytes_up":
			return member(&ok, bit(0), d.i64(&c.BytesUp))
		case "bytes_down":
			return member(&ok, bit(1), d.i64(&c.BytesDown))
		case "duration_ns":
			return member(&ok, bit(2), d.i64((*int64)(&c.Duration)))
		case "error":
			return member(&ok, bit(3), d.string(&c.Error))
		case "tls":
			return member(&ok, bit(4), d.tls(&c.TLS))
		}
		return 0
	}) && ok
}

func (d *decoder) body(dst **Body) bool {
	b := &Body{}
	*dst = b
	ok := true
	return d.object(func(name []byte) uint64 {
		switch string(name) {
		case "size":
			return member(&ok, bit(0), d.i64(&b.Size))
		case "text":
			return member(&ok, bit(1), d.string(&b.Text))
		case "b64":
			s, sok := d.str()
			if !sok {
				return member(&ok, 0, false)
			}
			// As encoding/json decodes base64 into a []byte.
			buf := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
			n, err := base64.StdEncoding.Decode(buf, []byte(s))
			b.B64 = buf[:n]
			return member(&ok, bit(2), err == nil)
		case "ref":
			return member(&ok, bit(3), d.string(&b.Ref))
		case "recorded":
			return member(&ok, bit(4), d.i64(&b.Recorded))
		case "truncated":
			return member(&ok, bit(5), d.bool(&b.Truncated))
		}
		return 0
	}) && ok
}

func (d *decoder) grpc(dst **GRPCInfo) bool {
	g := &GRPCInfo{}
	*dst = g
	ok := true
	return d.object(func(name []byte) uint64 {
		switch string(name) {
		case "service":
			return member(&ok, bit(0), d.string(&g.Service))
		case "method":
			return member(&ok, bit(1), d.string(&g.Method))
		case "status":
			g.Status = new(int)
			return member(&ok, bit(2), d.int(g.Status))
		case "message":
			return member(&ok, bit(3), d.string(&g.Message))
		case "messages":
			return member(&ok, bit(4), d.i64(&g.Messages))
		case "sizes":
			return member(&ok, bit(5), d.int64s(&g.Sizes))
		}
		return 0
	}) && ok
}

func (d *decoder) int64s(dst *[]int64) bool {
	if !d.next('[') {
		return false
	}
	out := []int64{}
	if !d.next(']') {
		for {
			var v int64
			if !d.i64(&v) {
				return false
			}
			out = append(out, v)
			if d.next(',') {
				continue
			}
			if !d.next(']') {
				return false
			}
			break
		}
	}
	*dst = out
	return true
}

func (d *decoder) httpRequest(r *HTTPRequest) bool {
	ok := true
	return d.object(func(name []byte) uint64 {
		switch string(name) {
		case "stream":
			return member(&ok, bit(0), d.uint64(&r.Stream))
		case "proto":
			return member(&ok, bit(1), d.string(&r.Proto))
		case "method":
			return member(&ok, bit(2), d.string(&r.Method))
		case "url":
			return member(&ok, bit(3), d.string(&r.URL))
		case "host":
			return member(&ok, bit(4), d.string(&r.Host))
		case "headers":
			return member(&ok, bit(5), d.headers(&r.Headers))
		case "body":
			return member(&ok, bit(6), d.body(&r.Body))
		case "grpc":
			return member(&ok, bit(7), d.grpc(&r.GRPC))
		}
		return 0
	}) && ok
}

func (d *decoder) httpResponse(r *HTTPResponse) bool {
	ok := true
	return d.object(func(name []byte) uint64 {
		switch string(name) {
		case "stream":
			return member(&ok, bit(0), d.uint64(&r.Stream))
		case "proto":
			return member(&ok, bit(1), d.string(&r.Proto))
		case "status":
			return member(&ok, bit(2), d.int(&r.Status))
		case "headers":
			return member(&ok, bit(3), d.headers(&r.Headers))
		case "body":
			return member(&ok, bit(4), d.body(&r.Body))
		case "latency_ns":
			return member(&ok, bit(5), d.i64((*int64)(&r.Latency)))
		case "duration_ns":
			return member(&ok, bit(6), d.i64((*int64)(&r.Duration)))
		case "error":
			return member(&ok, bit(7), d.string(&r.Error))
		case "trailers":
			return member(&ok, bit(8), d.headers(&r.Trailers))
		case "streamed":
			return member(&ok, bit(9), d.string(&r.Streamed))
		case "grpc":
			return member(&ok, bit(10), d.grpc(&r.GRPC))
		}
		return 0
	}) && ok
}

func (d *decoder) k8sRequest(k *K8sRequest) bool {
	ok := true
	return d.object(func(name []byte) uint64 {
		switch string(name) {
		case "stream":
			return member(&ok, bit(0), d.uint64(&k.Stream))
		case "verb":
			return member(&ok, bit(1), d.string(&k.Verb))
		case "api_group":
			return member(&ok, bit(2), d.string(&k.APIGroup))
		case "api_version":
			return member(&ok, bit(3), d.string(&k.APIVersion))
		case "resource":
			return member(&ok, bit(4), d.string(&k.Resource))
		case "subresource":
			return member(&ok, bit(5), d.string(&k.Subresource))
		case "namespace":
			return member(&ok, bit(6), d.string(&k.Namespace))
		case "name":
			return member(&ok, bit(7), d.string(&k.Name))
		case "status":
			return member(&ok, bit(8), d.int(&k.Status))
		case "as":
			return member(&ok, bit(9), d.string(&k.As))
		}
		return 0
	}) && ok
}

func (d *decoder) streamData(s *StreamData) bool {
	ok := true
	return d.object(func(name []byte) uint64 {
		switch string(name) {
		case "stream":
			return member(&ok, bit(0), d.string(&s.Stream))
		case "channel":
			return member(&ok, bit(1), d.string(&s.Channel))
		case "data":
			return member(&ok, bit(2), d.body(&s.Data))
		case "width":
			return member(&ok, bit(3), d.int(&s.Width))
		case "height":
			return member(&ok, bit(4), d.int(&s.Height))
		case "exit":
			s.Exit = new(int)
			return member(&ok, bit(5), d.int(s.Exit))
		}
		return 0
	}) && ok
}
