package mask

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// DecodedPrefix marks a JSON string that was base64 of text holding a
// secret: it is replaced by this prefix and the masked text.
const DecodedPrefix = "[MASKED-BASE64-DECODED]"

// MaskJSON masks the string values (and names) of a JSON document, keeping
// the order of members. A value named like a secret is masked whole; a
// value that is base64 of mostly-printable text is decoded and masked, and
// if anything was found it is replaced by DecodedPrefix and the masked
// text; the data and stringData values of Kubernetes Secrets are always
// masked whole. When nothing is found data is returned as is; input that
// is not JSON is masked as text.
func (m *Masker) MaskJSON(data []byte) ([]byte, []Finding) {
	var v any
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	n, err := decodeOrdered(d)
	if err != nil || d.More() {
		return m.MaskBytes(data)
	}
	v = n
	var fs []Finding
	nv := m.walk(v, "", false, &fs)
	if len(fs) == 0 {
		return data, nil
	}
	var b bytes.Buffer
	encodeOrdered(&b, nv)
	return b.Bytes(), fs
}

// MaskJSONString is MaskJSON for a string.
func (m *Masker) MaskJSONString(s string) (string, []Finding) {
	out, fs := m.MaskJSON([]byte(s))
	if len(fs) == 0 {
		return s, nil
	}
	return string(out), fs
}

// walk masks v; name is the member name it sits under, secret is set
// inside a Kubernetes Secret's data.
func (m *Masker) walk(v any, name string, secret bool, fs *[]Finding) any {
	switch x := v.(type) {
	case *object:
		isSecret := x.get("kind") == "Secret"
		for i := range x.keys {
			k := x.keys[i]
			under := secret || isSecret && (k == "data" || k == "stringData")
			x.vals[i] = m.walk(x.vals[i], k, under, fs)
			if mk, f := m.Mask(k); len(f) > 0 {
				x.keys[i], *fs = mk, append(*fs, f...)
			}
		}
		return x
	case []any:
		for i := range x {
			x[i] = m.walk(x[i], name, secret, fs)
		}
		return x
	case string:
		return m.maskValue(x, name, secret, fs)
	}
	return v
}

func (m *Masker) maskValue(s, name string, secret bool, fs *[]Finding) string {
	if s == "" || isToken(s) {
		return s
	}
	if secret {
		tok := m.Token(K8sSecretRule, s)
		*fs = append(*fs, Finding{Rule: K8sSecretRule, Secret: s, Token: tok})
		return tok
	}
	if name != "" && sensitiveKey(name) && keyedSecret(s) {
		tok, f := m.keyed(s)
		*fs = append(*fs, f)
		return tok
	}
	if dec, ok := decodeText(s); ok {
		if md, f := m.Mask(dec); len(f) > 0 {
			*fs = append(*fs, f...)
			return DecodedPrefix + md
		}
	}
	out, f := m.Mask(s)
	*fs = append(*fs, f...)
	return out
}

// decodeText decodes s when it is base64 (standard or URL, padded or not)
// of valid UTF-8 that is at least 90% printable.
func decodeText(s string) (string, bool) {
	if len(s) < 16 || len(s) > 1<<20 || strings.ContainsAny(s, " \t\n") {
		return "", false
	}
	var raw []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if raw, err = enc.DecodeString(s); err == nil {
			break
		}
	}
	if err != nil || len(raw) == 0 || !utf8.Valid(raw) {
		return "", false
	}
	printable := 0
	for _, r := range string(raw) {
		if r == '\n' || r == '\r' || r == '\t' || r >= 0x20 && r != 0x7f {
			printable++
		}
	}
	if printable*10 < utf8.RuneCount(raw)*9 {
		return "", false
	}
	return string(raw), true
}

// object is a JSON object that keeps the order of its members.
type object struct {
	keys []string
	vals []any
}

func (o *object) get(k string) any {
	for i, key := range o.keys {
		if key == k {
			return o.vals[i]
		}
	}
	return nil
}

// maxDepth bounds nesting, so hostile input cannot exhaust the stack.
const maxDepth = 512

func decodeOrdered(d *json.Decoder) (any, error) { return decodeValue(d, 0) }

func decodeValue(d *json.Decoder, depth int) (any, error) {
	if depth > maxDepth {
		return nil, errTooDeep
	}
	t, err := d.Token()
	if err != nil {
		return nil, err
	}
	switch t {
	case json.Delim('{'):
		o := &object{}
		for d.More() {
			kt, err := d.Token()
			if err != nil {
				return nil, err
			}
			k, _ := kt.(string)
			v, err := decodeValue(d, depth+1)
			if err != nil {
				return nil, err
			}
			o.keys, o.vals = append(o.keys, k), append(o.vals, v)
		}
		if _, err := d.Token(); err != nil {
			return nil, err
		}
		return o, nil
	case json.Delim('['):
		a := []any{}
		for d.More() {
			v, err := decodeValue(d, depth+1)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		if _, err := d.Token(); err != nil {
			return nil, err
		}
		return a, nil
	}
	return t, nil
}

type jsonError string

func (e jsonError) Error() string { return string(e) }

const errTooDeep = jsonError("mask: json nested too deeply")

func encodeOrdered(b *bytes.Buffer, v any) {
	switch x := v.(type) {
	case *object:
		b.WriteByte('{')
		for i, k := range x.keys {
			if i > 0 {
				b.WriteByte(',')
			}
			encodeString(b, k)
			b.WriteByte(':')
			encodeOrdered(b, x.vals[i])
		}
		b.WriteByte('}')
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			encodeOrdered(b, e)
		}
		b.WriteByte(']')
	case string:
		encodeString(b, x)
	case json.Number:
		b.WriteString(string(x))
	case bool:
		if x {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case nil:
		b.WriteString("null")
	}
}

func encodeString(b *bytes.Buffer, s string) {
	e := json.NewEncoder(b)
	e.SetEscapeHTML(false)
	_ = e.Encode(s)
	b.Truncate(b.Len() - 1) // Encode's newline
}
