// Package jsondiff computes the JSON patch between two JSON documents: the
// same operations as gomodules.xyz/jsonpatch/v2's CreatePatch (which
// controller-runtime's PatchResponseFromRaw uses), found without decoding
// the documents whole.
//
// CreatePatch decodes both documents into maps and slices and walks them.
// A webhook's mutation leaves most of a pod as it was, so Patch walks the
// documents' bytes instead: members and elements whose bytes are equal are
// equal values and are skipped unread; only what differs is decoded (the
// values of add and replace operations, and scalars whose spelling
// differs).
package jsondiff

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"gomodules.xyz/jsonpatch/v2"
)

// ErrInvalid is returned for a document that is not valid JSON.
var ErrInvalid = errors.New("invalid JSON document")

// Patch returns the JSON patch (RFC 6902) that turns document a into b:
// for objects, "add" for new members, "remove" for dropped ones and a
// recursion into the others; for arrays, "remove" of the surplus elements
// (last first), "add" of the new ones and a recursion into the common
// prefix; "replace" for changed scalars and for values whose type changed.
// These are CreatePatch's operations and marshal to the same JSON; they
// come in document order (b's members, then a's removed ones) where
// CreatePatch's follow map iteration. The values of add and replace
// operations are json.RawMessage, not decoded maps and slices.
//
// Unlike CreatePatch, Patch does not decode parts the documents share, so
// a number too large for a float64 there is not an error.
func Patch(a, b []byte) ([]jsonpatch.Operation, error) {
	if bytes.Equal(a, b) {
		return []jsonpatch.Operation{}, nil
	}
	if !json.Valid(a) || !json.Valid(b) {
		return nil, ErrInvalid
	}
	return PatchValid(a, b)
}

// PatchValid is Patch for documents already known to be valid JSON: ones
// encoding/json decoded without error or encoded. It skips the validation,
// and must not be given anything else.
func PatchValid(a, b []byte) ([]jsonpatch.Operation, error) {
	if bytes.Equal(a, b) {
		return []jsonpatch.Operation{}, nil
	}
	if depth(a) > maxDepth || depth(b) > maxDepth {
		// Each level re-scans its value's bytes: bound that work.
		ops, err := jsonpatch.CreatePatch(a, b)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		return ops, nil
	}
	d := differ{ops: []jsonpatch.Operation{}, scratch: scratch{ms: make([]member, 0, 64)}, vals: make([]byte, 0, len(b)/2)}
	if err := d.values(trim(a), trim(b), ""); err != nil {
		return nil, err
	}
	return d.ops, nil
}

// maxDepth is the deepest nesting Patch walks itself; a Kubernetes object
// is about ten deep.
const maxDepth = 64

// depth returns the deepest nesting of objects and arrays in a valid
// JSON value.
func depth(v []byte) int {
	d, deepest := 0, 0
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '"':
			i = stringEnd(v, i) - 1
		case '{', '[':
			d++
			deepest = max(deepest, d)
		case '}', ']':
			d--
		}
	}
	return deepest
}

// differ collects the operations of one Patch.
type differ struct {
	scratch
	ops []jsonpatch.Operation
	// vals holds the operations' values, one after the other.
	vals []byte
}

// kind is the JSON type of a value, from its first byte.
type kind byte

const (
	kindNull kind = iota
	kindBool
	kindNumber
	kindString
	kindArray
	kindObject
)

func kindOf(v []byte) kind {
	switch v[0] {
	case '{':
		return kindObject
	case '[':
		return kindArray
	case '"':
		return kindString
	case 't', 'f':
		return kindBool
	case 'n':
		return kindNull
	}
	return kindNumber
}

// values appends the operations that turn value a into value b at path.
// Both are valid JSON without surrounding white space.
func (d *differ) values(a, b []byte, path string) error {
	if bytes.Equal(a, b) {
		return nil
	}
	ka, kb := kindOf(a), kindOf(b)
	if ka != kb {
		return d.add("replace", path, b)
	}
	switch ka {
	case kindObject:
		return d.objects(a, b, path)
	case kindArray:
		return d.arrays(a, b, path)
	case kindNull:
		return nil
	}
	// Scalars spelled differently may still be equal ("1.0" and "1",
	// "\u0061" and "a"): compare them decoded, as CreatePatch does.
	var av, bv any
	if err := json.Unmarshal(a, &av); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := json.Unmarshal(b, &bv); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if av != bv {
		return d.add("replace", path, b)
	}
	return nil
}

// add appends an operation op at path whose value is raw. The value is a
// json.RawMessage in the form Marshal gives the decoded value (see
// appendCanonical), so the operation marshals as CreatePatch's does.
func (d *differ) add(op, path string, raw []byte) error {
	start := len(d.vals)
	vals, err := d.appendCanonical(d.vals, raw)
	if err != nil {
		return err
	}
	d.vals = vals
	v := vals[start:len(vals):len(vals)] // later values are appended after it
	d.ops = append(d.ops, jsonpatch.Operation{Operation: op, Path: path, Value: json.RawMessage(v)})
	return nil
}

func (d *differ) objects(a, b []byte, path string) error {
	mark := len(d.ms)
	defer d.pop(mark)
	am, err := d.members(a)
	if err != nil {
		return err
	}
	bm, err := d.members(b)
	if err != nil {
		return err
	}
	// Both lists are sorted by name: walk them side by side.
	for len(am) > 0 || len(bm) > 0 {
		c := 0
		switch {
		case len(am) == 0:
			c = 1
		case len(bm) == 0:
			c = -1
		default:
			c = bytes.Compare(am[0].key, bm[0].key)
		}
		switch {
		case c < 0: // only in a
			d.ops = append(d.ops, jsonpatch.Operation{Operation: "remove", Path: appendPath(path, am[0].key)})
			am = am[1:]
		case c > 0: // only in b
			if err := d.add("add", appendPath(path, bm[0].key), bm[0].val); err != nil {
				return err
			}
			bm = bm[1:]
		default:
			if !bytes.Equal(am[0].val, bm[0].val) {
				if err := d.values(am[0].val, bm[0].val, appendPath(path, am[0].key)); err != nil {
					return err
				}
			}
			am, bm = am[1:], bm[1:]
		}
	}
	return nil
}

func (d *differ) arrays(a, b []byte, path string) error {
	ae := elements(a)
	be := elements(b)
	n := min(len(ae), len(be))
	for i := len(ae) - 1; i >= n; i-- {
		d.ops = append(d.ops, jsonpatch.Operation{Operation: "remove", Path: path + "/" + strconv.Itoa(i)})
	}
	for i := n; i < len(be); i++ {
		if err := d.add("add", path+"/"+strconv.Itoa(i), be[i]); err != nil {
			return err
		}
	}
	for i := range n {
		if bytes.Equal(ae[i], be[i]) {
			continue
		}
		if err := d.values(ae[i], be[i], path+"/"+strconv.Itoa(i)); err != nil {
			return err
		}
	}
	return nil
}

func appendPath(path string, key []byte) string {
	n := len(path) + 1 + len(key)
	for _, c := range key {
		if c == '~' || c == '/' {
			n++
		}
	}
	var sb strings.Builder
	sb.Grow(n)
	sb.WriteString(path)
	sb.WriteByte('/')
	for _, c := range key { // a JSON pointer token (RFC 6901)
		switch c {
		case '~':
			sb.WriteString("~0")
		case '/':
			sb.WriteString("~1")
		default:
			sb.WriteByte(c)
		}
	}
	return sb.String()
}

// member is one member of an object: its decoded name and raw value.
type member struct {
	key, val []byte
}

// scratch is the member lists of the objects being walked, as a stack:
// an object's list is pushed on it (members) and dropped when the object
// is done (pop), so a walk reuses one array.
type scratch struct {
	ms []member
}

// members pushes the members of a valid JSON object, sorted by name, and
// returns them; of members with equal names only the last is kept, as in
// a decoded map. Drop them with pop(mark), mark being len(s.ms) before.
func (s *scratch) members(obj []byte) ([]member, error) {
	start := len(s.ms)
	i := skipSpace(obj, 1)
	for obj[i] != '}' {
		end := stringEnd(obj, i)
		key, err := decodeKey(obj[i:end])
		if err != nil {
			return nil, err
		}
		i = skipSpace(obj, end)
		i = skipSpace(obj, i+1) // ':'
		vend := valueEnd(obj, i)
		s.ms = append(s.ms, member{key: key, val: obj[i:vend]})
		i = skipSpace(obj, vend)
		if obj[i] == ',' {
			i = skipSpace(obj, i+1)
		}
	}
	list := s.ms[start:]
	slices.SortStableFunc(list, func(a, b member) int { return bytes.Compare(a.key, b.key) })
	out := list[:0]
	for j, m := range list {
		if j+1 < len(list) && bytes.Equal(list[j+1].key, m.key) {
			continue // a later member of that name wins
		}
		out = append(out, m)
	}
	s.ms = s.ms[:start+len(out)]
	return out[:len(out):len(out)], nil
}

// pop drops the lists pushed since len(s.ms) was mark.
func (s *scratch) pop(mark int) { s.ms = s.ms[:mark] }

// elements splits a valid JSON array into its elements.
func elements(arr []byte) [][]byte {
	out := make([][]byte, 0, 4)
	i := skipSpace(arr, 1)
	for arr[i] != ']' {
		end := valueEnd(arr, i)
		out = append(out, arr[i:end])
		i = skipSpace(arr, end)
		if arr[i] == ',' {
			i = skipSpace(arr, i+1)
		}
	}
	return out
}

// decodeKey returns the member name a quoted JSON string stands for, as
// encoding/json decodes it (escapes resolved, invalid UTF-8 replaced).
func decodeKey(quoted []byte) ([]byte, error) {
	raw := quoted[1 : len(quoted)-1]
	for _, c := range raw {
		if c == '\\' || c >= utf8.RuneSelf {
			var s string
			if err := json.Unmarshal(quoted, &s); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
			}
			return []byte(s), nil
		}
	}
	return raw, nil
}

func trim(v []byte) []byte { return bytes.TrimLeft(bytes.TrimRight(v, " \t\r\n"), " \t\r\n") }

func skipSpace(v []byte, i int) int {
	for i < len(v) {
		switch v[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}

// stringEnd returns the index after the string starting at v[i] ('"').
func stringEnd(v []byte, i int) int {
	for i++; i < len(v); i++ {
		switch v[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return i
}

// valueEnd returns the index after the valid JSON value starting at v[i].
func valueEnd(v []byte, i int) int {
	switch v[i] {
	case '"':
		return stringEnd(v, i)
	case '{', '[':
		depth := 0
		for ; i < len(v); i++ {
			switch v[i] {
			case '"':
				i = stringEnd(v, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return i
	}
	for i < len(v) { // number, true, false, null
		switch v[i] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return i
		}
		i++
	}
	return i
}
