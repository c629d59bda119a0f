package k8s

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
)

// Masked replaces every value under a Secret's data and stringData in
// what is recorded, and whatever of a Secret body cannot be parsed.
const Masked = "[MASKED:k8s-secret]"

// MaskRule names the masking in event.Event.Masked.
const MaskRule = "k8s-secret"

// lastApplied is the annotation kubectl apply keeps a copy of the whole
// object in, Secret values included.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

var (
	maskedJSON  = []byte(`"` + Masked + `"`)
	secretBytes = []byte("Secret")
)

// MaskSecrets returns body (JSON: one value, or a stream of them such as
// watch events) with the value of every key under the data and stringData
// of each Secret replaced by Masked, keys kept, and with the copy kubectl
// apply keeps in the last-applied-configuration annotation masked alike.
//
// secret says the body belongs to a request for Secrets (Request.Secret):
// then every object in it is treated as a Secret (a Secret, a SecretList's
// items, watch events' objects, a merge patch, JSON patch operations on
// /data and /stringData), and whatever does not parse as JSON (protobuf,
// YAML, a body cut short by the recording cap) is replaced by Masked as a
// whole. Otherwise only objects of kind Secret are masked, wherever they
// are nested, and JSON cut short that mentions a Secret is replaced whole. changed reports whether body was rewritten; the result
// keeps the order of keys.
func MaskSecrets(body []byte, secret bool) (out []byte, changed bool) {
	if len(body) == 0 || (!secret && !bytes.Contains(body, secretBytes)) {
		return body, false
	}
	var b bytes.Buffer
	dec := json.NewDecoder(bytes.NewReader(body))
	prev := 0
	for {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			b.Write(body[prev:])
			break
		}
		if err != nil {
			rest := body[prev:]
			ws := len(rest) - len(bytes.TrimLeft(rest, " \t\r\n"))
			if secret || (bytes.Contains(rest, secretBytes) && ws < len(rest) && (rest[ws] == '{' || rest[ws] == '[')) {
				b.Write(rest[:ws])
				b.WriteString(Masked)
			} else {
				b.Write(rest)
			}
			break
		}
		end := int(dec.InputOffset())
		start := end - len(raw)
		b.Write(body[prev:start])
		b.Write(rewrite(raw, secret))
		prev = end
	}
	out = b.Bytes()
	return out, !bytes.Equal(out, body)
}

// rewrite masks one JSON value; secret says it is (part of) a Secret.
func rewrite(raw []byte, secret bool) []byte {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return raw
	}
	switch raw[0] {
	case '{':
		return rewriteObject(raw, secret)
	case '[':
		var elems []json.RawMessage
		if json.Unmarshal(raw, &elems) != nil {
			return raw
		}
		var b bytes.Buffer
		b.WriteByte('[')
		for i, e := range elems {
			if i > 0 {
				b.WriteByte(',')
			}
			b.Write(visit(e, secret))
		}
		b.WriteByte(']')
		return b.Bytes()
	}
	return raw
}

// visit rewrites a nested value when it may hold something to mask.
func visit(raw []byte, secret bool) []byte {
	if secret || bytes.Contains(raw, secretBytes) {
		return rewrite(raw, secret)
	}
	return raw
}

type member struct {
	key   string
	value json.RawMessage
}

// members decodes an object's members in order.
func members(raw []byte) ([]member, bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, false
	}
	var ms []member
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, false
		}
		k, ok := t.(string)
		if !ok {
			return nil, false
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, false
		}
		ms = append(ms, member{k, v})
	}
	return ms, true
}

func str(raw []byte) string {
	var s string
	if len(raw) > 0 && raw[0] == '"' && json.Unmarshal(raw, &s) == nil {
		return s
	}
	return ""
}

func rewriteObject(raw []byte, secret bool) []byte {
	ms, ok := members(raw)
	if !ok {
		if secret {
			return maskedJSON
		}
		return raw
	}
	var op, path string
	for _, m := range ms {
		switch m.key {
		case "kind":
			if str(m.value) == "Secret" {
				secret = true
			}
		case "op":
			op = str(m.value)
		case "path":
			path = str(m.value)
		}
	}
	patchOp := secret && op != "" && patchesValues(path)
	return object(ms, func(m member) []byte {
		switch {
		case secret && (m.key == "data" || m.key == "stringData"):
			return maskValues(m.value)
		case secret && m.key == "metadata":
			return maskMetadata(m.value)
		case patchOp && m.key == "value":
			if path == "" || path == "/" {
				return rewrite(m.value, true)
			}
			return maskedJSON
		default:
			return visit(m.value, secret)
		}
	})
}

// object writes a JSON object with ms's keys, in their order, and the values
// value returns for them.
func object(ms []member, value func(member) []byte) []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range ms {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(m.key)
		b.Write(k)
		b.WriteByte(':')
		b.Write(value(m))
	}
	b.WriteByte('}')
	return b.Bytes()
}

// patchesValues reports whether a JSON patch operation on path writes
// Secret values.
func patchesValues(path string) bool {
	for _, p := range []string{"/data", "/stringData", "/metadata/annotations"} {
		if path == p || strings.HasPrefix(path, p+"/") {
			return true
		}
	}
	return path == "" || path == "/" || path == "/metadata"
}

// maskValues replaces every value of a data or stringData object, keeping
// its keys; anything else but null is replaced whole.
func maskValues(raw []byte) []byte {
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return raw
	}
	ms, ok := members(raw)
	if !ok {
		return maskedJSON
	}
	return object(ms, func(member) []byte { return maskedJSON })
}

// maskMetadata masks the last-applied-configuration annotation of a
// Secret's metadata.
func maskMetadata(raw []byte) []byte {
	if !bytes.Contains(raw, []byte(lastApplied)) {
		return raw
	}
	ms, ok := members(raw)
	if !ok {
		return maskedJSON
	}
	return object(ms, func(m member) []byte {
		if m.key == "annotations" {
			return maskAnnotations(m.value)
		}
		return m.value
	})
}

func maskAnnotations(raw []byte) []byte {
	ms, ok := members(raw)
	if !ok {
		return maskedJSON
	}
	return object(ms, func(m member) []byte {
		if m.key != lastApplied {
			return m.value
		}
		var s string
		if json.Unmarshal(m.value, &s) != nil {
			return maskedJSON
		}
		masked, _ := MaskSecrets([]byte(s), true)
		q, _ := json.Marshal(string(masked))
		return q
	})
}
