package policy

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
	"sigs.k8s.io/yaml"

	"github.com/chaperone-dev/chaperone/pkg/policy/v1alpha1"
)

// MaxFileSize bounds a policy file or bundle.
const MaxFileSize = 4 << 20

// ErrSyntax is wrapped by errors about the shape of a policy document
// (YAML syntax, unknown or duplicate fields, wrong types); check with
// errors.Is. Errors about the content wrap v1alpha1.ErrInvalid.
var ErrSyntax = errors.New("malformed policy document")

// LoadFile reads SessionPolicy documents from a YAML (or JSON) file; a file
// may hold several documents separated by "---". Decoding is strict:
// unknown and duplicate fields are errors, with their line. The policies
// are defaulted and validated (not yet compiled: see Compile).
func LoadFile(path string) ([]v1alpha1.SessionPolicy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load policy: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("load policy %s: %w", path, err)
	}
	ps, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ps, nil
}

// Parse is LoadFile for bytes already read.
func Parse(data []byte) ([]v1alpha1.SessionPolicy, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrSyntax, MaxFileSize)
	}
	dec := yamlv3.NewDecoder(bytes.NewReader(data))
	var out []v1alpha1.SessionPolicy
	for doc := 1; ; doc++ {
		var n yamlv3.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: document %d: %w", ErrSyntax, doc, err)
		}
		if len(n.Content) == 0 || n.Content[0].Tag == "!!null" {
			continue // an empty document, e.g. after a trailing ---
		}
		root := n.Content[0]
		if err := checkFields(root, reflect.TypeFor[v1alpha1.SessionPolicy](), "", 0); err != nil {
			return nil, fmt.Errorf("%w: document %d: %w", ErrSyntax, doc, err)
		}
		raw, err := yamlv3.Marshal(root)
		if err != nil {
			return nil, fmt.Errorf("%w: document %d: %w", ErrSyntax, doc, err)
		}
		var p v1alpha1.SessionPolicy
		if err := yaml.UnmarshalStrict(raw, &p); err != nil {
			return nil, fmt.Errorf("%w: document %d (line %d): %w", ErrSyntax, doc, root.Line, err)
		}
		p.Default()
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("document %d (line %d): %w", doc, root.Line, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// maxDepth bounds checkFields' recursion on hostile input.
const maxDepth = 32

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
var textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()

// checkFields walks a YAML node against the Go type it will decode into
// and reports the first unknown or duplicate field with its line and
// path. Type mismatches are left to the JSON decoder.
func checkFields(n *yamlv3.Node, t reflect.Type, path string, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("line %d: %s: nested too deeply", n.Line, pathOr(path))
	}
	if n.Kind == yamlv3.AliasNode {
		// Following aliases could take exponential time on a hostile file;
		// the strict JSON decoding still rejects unknown fields in them.
		return nil
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) || reflect.PointerTo(t).Implements(textUnmarshalerType) {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yamlv3.MappingNode {
			return nil
		}
		fields := jsonFields(t)
		seen := make(map[string]int, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			name := path + "." + k.Value
			if path == "" {
				name = k.Value
			}
			if line, dup := seen[k.Value]; dup {
				return fmt.Errorf("line %d: duplicate field %q (first at line %d)", k.Line, name, line)
			}
			seen[k.Value] = k.Line
			ft, ok := fields[k.Value]
			if !ok {
				return fmt.Errorf("line %d: unknown field %q", k.Line, name)
			}
			if err := checkFields(v, ft, name, depth+1); err != nil {
				return err
			}
		}
	case reflect.Map:
		if n.Kind != yamlv3.MappingNode {
			return nil
		}
		seen := make(map[string]int, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			name := fmt.Sprintf("%s[%q]", path, k.Value)
			if line, dup := seen[k.Value]; dup {
				return fmt.Errorf("line %d: duplicate key %s (first at line %d)", k.Line, name, line)
			}
			seen[k.Value] = k.Line
			if err := checkFields(v, t.Elem(), name, depth+1); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yamlv3.SequenceNode {
			return nil
		}
		for i, v := range n.Content {
			if err := checkFields(v, t.Elem(), fmt.Sprintf("%s[%d]", path, i), depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// jsonFields maps the JSON names of a struct's fields to their types,
// flattening embedded structs the way encoding/json does.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	m := make(map[string]reflect.Type, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range jsonFields(ft) {
					m[k] = v
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = f.Type
	}
	return m
}

func pathOr(p string) string {
	if p == "" {
		return "document"
	}
	return p
}

// decodeStrictJSON decodes exactly one JSON value, refusing unknown fields.
func decodeStrictJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the bundle")
	}
	return nil
}
