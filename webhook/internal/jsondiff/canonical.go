package jsondiff

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"

	"gomodules.xyz/jsonpatch/v2"
)

// appendCanonical appends to dst the JSON that encoding/json's Marshal
// writes for value v decoded into an any (maps, slices, float64, string,
// bool, nil): members sorted by name, the last of equal names kept,
// numbers as float64, strings escaped as Marshal escapes them, no white
// space. v is a valid JSON value; the error is Unmarshal's for a number
// out of float64's range.
//
// An operation's value in that form marshals (as json.RawMessage) to the
// bytes the decoded value would, without building and sorting maps.
func (s *scratch) appendCanonical(dst, v []byte) ([]byte, error) {
	switch v[0] {
	case '{':
		mark := len(s.ms)
		defer s.pop(mark)
		ms, err := s.members(v)
		if err != nil {
			return nil, err
		}
		dst = append(dst, '{')
		for i := range ms {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, ms[i].key)
			dst = append(dst, ':')
			if dst, err = s.appendCanonical(dst, ms[i].val); err != nil {
				return nil, err
			}
		}
		return append(dst, '}'), nil
	case '[':
		dst = append(dst, '[')
		i := skipSpace(v, 1)
		for n := 0; v[i] != ']'; n++ {
			if n > 0 {
				dst = append(dst, ',')
			}
			end := valueEnd(v, i)
			var err error
			if dst, err = s.appendCanonical(dst, v[i:end]); err != nil {
				return nil, err
			}
			i = skipSpace(v, end)
			if v[i] == ',' {
				i = skipSpace(v, i+1)
			}
		}
		return append(dst, ']'), nil
	case '"':
		if plainString(v) {
			return append(dst, v...), nil
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		return appendString(dst, s), nil
	case 't', 'f', 'n':
		return append(dst, v...), nil
	}
	return appendNumber(dst, v)
}

// plainString reports whether a quoted JSON string is already as Marshal
// writes it: printable ASCII without escapes or characters Marshal
// escapes for HTML.
func plainString(q []byte) bool {
	for _, c := range q[1 : len(q)-1] {
		if c == '\\' || c >= utf8.RuneSelf || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// appendString appends s quoted as Marshal quotes it.
func appendString[T string | []byte](dst []byte, s T) []byte {
	plain := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf || c == '<' || c == '>' || c == '&' {
			plain = false
			break
		}
	}
	if plain {
		dst = append(dst, '"')
		dst = append(dst, s...)
		return append(dst, '"')
	}
	b, _ := json.Marshal(string(s)) //nolint:errcheck // a string always marshals
	return append(dst, b...)
}

// appendNumber appends a JSON number as Marshal writes the float64 it
// decodes to.
func appendNumber(dst, num []byte) ([]byte, error) {
	if len(num) < 16 && num[0] != '-' && !bytes.ContainsAny(num, ".eE") && (num[0] != '0' || len(num) == 1) {
		return append(dst, num...), nil // an integer float64 holds exactly, written as is
	}
	f, err := strconv.ParseFloat(string(num), 64)
	if err != nil {
		return nil, fmt.Errorf("%w: number %s: %w", ErrInvalid, num, err)
	}
	// encoding/json's float64 format: shortest form, exponent only for
	// very small or very large magnitudes, "e-7" rather than "e-07".
	format := byte('f')
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		format = 'e'
	}
	start := len(dst)
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		if n := len(dst) - start; n >= 4 && dst[len(dst)-4] == 'e' && dst[len(dst)-3] == '-' && dst[len(dst)-2] == '0' {
			dst[len(dst)-2] = dst[len(dst)-1]
			dst = dst[:len(dst)-1]
		}
	}
	return dst, nil
}

// Marshal returns the JSON of a patch: the bytes json.Marshal(ops) gives,
// written directly for operations whose values are json.RawMessage in
// Marshal's form (those of Patch); others go through json.Marshal.
func Marshal(ops []jsonpatch.Operation) ([]byte, error) {
	n := 2
	for i := range ops {
		raw, ok := ops[i].Value.(json.RawMessage)
		if !ok && ops[i].Value != nil {
			return json.Marshal(ops)
		}
		n += len(ops[i].Path) + len(raw) + 40
	}
	dst := make([]byte, 0, n)
	dst = append(dst, '[')
	for i := range ops {
		op := &ops[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"op":`...)
		dst = appendString(dst, op.Operation)
		dst = append(dst, `,"path":`...)
		dst = appendString(dst, op.Path)
		switch raw, _ := op.Value.(json.RawMessage); {
		case raw != nil:
			dst = append(dst, `,"value":`...)
			dst = append(dst, raw...)
		case op.Operation == "add" || op.Operation == "replace":
			dst = append(dst, `,"value":null`...) // as Operation.MarshalJSON
		}
		dst = append(dst, '}')
	}
	return append(dst, ']'), nil
}
