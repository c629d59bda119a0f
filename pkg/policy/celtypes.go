package policy

import (
	"fmt"
	"reflect"
	"slices"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
)

// CEL type names of the objects rules see.
const (
	typeRequest     = "chaperone.policy.Request"
	typeDestination = "chaperone.policy.Destination"
	typeHTTP        = "chaperone.policy.HTTP"
	typeK8s         = "chaperone.policy.K8s"
	typeSQL         = "chaperone.policy.SQL"
	typeLLM         = "chaperone.policy.LLM"
	typeIdentity    = "chaperone.policy.Identity"
)

// objType declares one Go type to CEL with hand-written accessors: the
// checker sees its fields (so unknown fields fail to compile) and the
// interpreter reads them without reflection.
//
// The values CEL sees are views of one activation (reqView, httpView, …:
// the same struct under different names), so moving from request to
// request.http costs nothing, and each field is converted to a CEL value
// at most once per request, however many rules read it.
type objType struct {
	name    string
	celType *types.Type
	rtype   reflect.Type
	unwrap  func(any) *activation
	fields  map[string]*types.FieldType
	names   []string
}

// field declares one field of an objType.
type field struct {
	name  string
	typ   *types.Type
	get   func(*activation) any
	isSet func(*activation) bool
}

func newObjType[V any](name string, unwrap func(any) *activation, fields ...field) *objType {
	t := &objType{
		name:    name,
		celType: types.NewObjectType(name, traits.IndexerType|traits.FieldTesterType),
		rtype:   reflect.TypeFor[V](),
		unwrap:  unwrap,
		fields:  make(map[string]*types.FieldType, len(fields)),
	}
	for _, f := range fields {
		get, isSet := f.get, f.isSet
		t.fields[f.name] = &types.FieldType{
			Type: f.typ,
			IsSet: func(obj any) bool {
				a := unwrap(obj)
				return a != nil && isSet(a)
			},
			GetFrom: func(obj any) (any, error) {
				a := unwrap(obj)
				if a == nil {
					return nil, fmt.Errorf("field %s: %T is not a %s", f.name, obj, name)
				}
				return get(a), nil
			},
		}
		t.names = append(t.names, f.name)
	}
	return t
}

// strField declares a string field; slot is its place in the
// activation's cache of converted values.
func strField(name string, slot int, get func(*activation) string) field {
	return field{
		name: name,
		typ:  types.StringType,
		get: func(a *activation) any {
			if v := a.vals[slot]; v != nil {
				return v
			}
			s := get(a)
			v, ok := a.lits[s]
			if !ok {
				v = types.String(s) // boxed once, for cache and caller
			}
			a.vals[slot] = v
			return v
		},
		isSet: func(a *activation) bool { return get(a) != "" },
	}
}

// mapField declares a map(string, string) field. Its value is the Go map
// itself: CEL indexes a map[string]string without converting it (a lookup
// allocates only the found value) and converts it whole only when a rule
// uses it whole.
func mapField(name string, get func(*activation) map[string]string) field {
	return field{
		name:  name,
		typ:   types.NewMapType(types.StringType, types.StringType),
		get:   func(a *activation) any { return get(a) },
		isSet: func(a *activation) bool { return len(get(a)) > 0 },
	}
}

func objField(name string, typ *objType, get func(*activation) any, isSet func(*activation) bool) field {
	return field{name: name, typ: typ.celType, get: get, isSet: isSet}
}

// HasTrait implements ref.Type.
func (t *objType) HasTrait(trait int) bool { return t.celType.HasTrait(trait) }

// TypeName implements ref.Type.
func (t *objType) TypeName() string { return t.name }

// ReflectType implements types.StructTypeDescriptor.
func (t *objType) ReflectType() reflect.Type { return t.rtype }

// FieldNames implements types.StructTypeDescriptor.
func (t *objType) FieldNames() []string { return slices.Clone(t.names) }

// FindFieldType implements types.StructTypeDescriptor.
func (t *objType) FindFieldType(name string) (*types.FieldType, bool) {
	f, ok := t.fields[name]
	return f, ok
}

// NewValue implements types.StructTypeDescriptor: rules cannot build
// requests.
func (t *objType) NewValue(types.Adapter, map[string]ref.Val) ref.Val {
	return types.NewErr("%s cannot be constructed", t.name)
}

// Adapt implements types.StructTypeDescriptor.
func (t *objType) Adapt(a types.Adapter, v any) ref.Val {
	rv := reflect.ValueOf(v)
	switch {
	case !rv.IsValid():
		return types.NullValue
	case rv.Kind() == reflect.Pointer:
		if rv.IsNil() {
			return types.NullValue
		}
	default:
		p := reflect.New(rv.Type())
		p.Elem().Set(rv)
		v = p.Interface()
	}
	return &objVal{t: t, v: v, adapter: a}
}

// objVal is an objType value (a pointer to the Go struct) seen as a CEL
// value, when a rule uses a whole section rather than one of its fields.
type objVal struct {
	t       *objType
	v       any
	adapter types.Adapter
}

func (o *objVal) ConvertToNative(rt reflect.Type) (any, error) {
	switch rt {
	case reflect.TypeOf(o.v):
		return o.v, nil
	case o.t.rtype:
		return reflect.ValueOf(o.v).Elem().Interface(), nil
	}
	return nil, fmt.Errorf("type conversion error from %s to %v", o.t.name, rt)
}

func (o *objVal) ConvertToType(t ref.Type) ref.Val {
	switch {
	case t == types.TypeType:
		return o.t.celType
	case t.TypeName() == o.t.name:
		return o
	}
	return types.NewErr("type conversion error from %s to %s", o.t.name, t.TypeName())
}

func (o *objVal) Equal(other ref.Val) ref.Val {
	ov, ok := other.(*objVal)
	return types.Bool(ok && ov.t == o.t && reflect.DeepEqual(o.v, ov.v))
}

func (o *objVal) Type() ref.Type { return o.t.celType }

func (o *objVal) Value() any { return o.v }

// Get implements traits.Indexer.
func (o *objVal) Get(key ref.Val) ref.Val {
	f, errVal := o.field(key)
	if errVal != nil {
		return errVal
	}
	v, err := f.GetFrom(o.v)
	if err != nil {
		return types.WrapErr(err)
	}
	return o.adapter.NativeToValue(v)
}

// IsSet implements traits.FieldTester.
func (o *objVal) IsSet(key ref.Val) ref.Val {
	f, errVal := o.field(key)
	if errVal != nil {
		return errVal
	}
	return types.Bool(f.IsSet(o.v))
}

func (o *objVal) field(key ref.Val) (*types.FieldType, ref.Val) {
	name, ok := key.(types.String)
	if !ok {
		return nil, types.MaybeNoSuchOverloadErr(key)
	}
	f, ok := o.t.fields[string(name)]
	if !ok {
		return nil, types.NewErr("no such field: %s", string(name))
	}
	return f, nil
}

// Slots of the activation's value cache, one per leaf field (the request's
// maps are handed to CEL as Go maps and need none). The identity's come
// last: Decide copies them from Policy.idVals in one piece.
const (
	slotProtocol = iota
	slotDestHost
	slotDestIP
	slotDestPort
	slotHTTPMethod
	slotHTTPURL
	slotHTTPPath
	slotHTTPHost
	slotK8sVerb
	slotK8sAPIGroup
	slotK8sAPIVersion
	slotK8sResource
	slotK8sSubresource
	slotK8sNamespace
	slotK8sName
	slotSQLStatement
	slotSQLCommand
	slotSQLDatabase
	slotSQLUser
	slotLLMProvider
	slotLLMModel
	slotIDUser
	slotIDGroups
	slotIDServiceAccount
	slotIDNamespace
	slotIDPod
	slotIDLabels
	numSlots
)

// identityVals converts the fields of id to CEL values equal to those the
// identity view's fields yield, by slot from slotIDUser, for Policy.idVals.
// The list and map hold converted elements, so that rules reading them
// (`"admins" in identity.groups`) allocate nothing.
func identityVals(id *Identity) (vals [numSlots - slotIDUser]ref.Val) {
	_, sa := serviceAccountName(id)
	groups := make([]ref.Val, len(id.Groups))
	for i, g := range id.Groups {
		groups[i] = types.String(g)
	}
	labels := make(map[ref.Val]ref.Val, len(id.Labels))
	for k, v := range id.Labels {
		labels[types.String(k)] = types.String(v)
	}
	vals[0] = types.String(id.User) // slotIDUser
	vals[slotIDGroups-slotIDUser] = types.NewRefValList(types.DefaultTypeAdapter, groups)
	vals[slotIDServiceAccount-slotIDUser] = types.String(sa)
	vals[slotIDNamespace-slotIDUser] = types.String(id.Namespace)
	vals[slotIDPod-slotIDUser] = types.String(id.Pod)
	vals[slotIDLabels-slotIDUser] = types.NewRefValMap(types.DefaultTypeAdapter, labels)
	return vals
}

// The views of an activation, one per CEL object type.
type (
	reqView      activation
	destView     activation
	httpView     activation
	k8sView      activation
	sqlView      activation
	llmView      activation
	identityView activation
)

// objTypes declares Request, its sections and Identity.
func objTypes() []*objType {
	dest := newObjType[destView](typeDestination,
		func(o any) *activation { v, _ := o.(*destView); return (*activation)(v) },
		strField("host", slotDestHost, func(a *activation) string { return a.req.Destination.Host }),
		strField("ip", slotDestIP, func(a *activation) string { return a.req.Destination.IP }),
		field{
			name: "port",
			typ:  types.IntType,
			get: func(a *activation) any {
				if v := a.vals[slotDestPort]; v != nil {
					return v
				}
				var v ref.Val = types.Int(a.req.Destination.Port)
				a.vals[slotDestPort] = v
				return v
			},
			isSet: func(a *activation) bool { return a.req.Destination.Port != 0 },
		},
	)
	http := newObjType[httpView](typeHTTP,
		func(o any) *activation { v, _ := o.(*httpView); return (*activation)(v) },
		strField("method", slotHTTPMethod, func(a *activation) string { return a.req.HTTP.Method }),
		strField("url", slotHTTPURL, func(a *activation) string { return a.req.HTTP.URL }),
		strField("path", slotHTTPPath, func(a *activation) string { return a.req.HTTP.Path }),
		strField("host", slotHTTPHost, func(a *activation) string { return a.req.HTTP.Host }),
		mapField("headers", func(a *activation) map[string]string { return a.req.HTTP.Headers }),
		mapField("query", func(a *activation) map[string]string { return a.req.HTTP.Query }),
	)
	k8s := newObjType[k8sView](typeK8s,
		func(o any) *activation { v, _ := o.(*k8sView); return (*activation)(v) },
		strField("verb", slotK8sVerb, func(a *activation) string { return a.req.K8s.Verb }),
		strField("apiGroup", slotK8sAPIGroup, func(a *activation) string { return a.req.K8s.APIGroup }),
		strField("apiVersion", slotK8sAPIVersion, func(a *activation) string { return a.req.K8s.APIVersion }),
		strField("resource", slotK8sResource, func(a *activation) string { return a.req.K8s.Resource }),
		strField("subresource", slotK8sSubresource, func(a *activation) string { return a.req.K8s.Subresource }),
		strField("namespace", slotK8sNamespace, func(a *activation) string { return a.req.K8s.Namespace }),
		strField("name", slotK8sName, func(a *activation) string { return a.req.K8s.Name }),
	)
	sql := newObjType[sqlView](typeSQL,
		func(o any) *activation { v, _ := o.(*sqlView); return (*activation)(v) },
		strField("statement", slotSQLStatement, func(a *activation) string { return a.req.SQL.Statement }),
		strField("command", slotSQLCommand, func(a *activation) string {
			if a.req.SQL.Command == "" {
				return SQLCommand(a.req.SQL.Statement)
			}
			return a.req.SQL.Command
		}),
		strField("database", slotSQLDatabase, func(a *activation) string { return a.req.SQL.Database }),
		strField("user", slotSQLUser, func(a *activation) string { return a.req.SQL.User }),
	)
	llm := newObjType[llmView](typeLLM,
		func(o any) *activation { v, _ := o.(*llmView); return (*activation)(v) },
		strField("provider", slotLLMProvider, func(a *activation) string { return a.req.LLM.Provider }),
		strField("model", slotLLMModel, func(a *activation) string { return a.req.LLM.Model }),
	)
	req := newObjType[reqView](typeRequest,
		func(o any) *activation { v, _ := o.(*reqView); return (*activation)(v) },
		strField("protocol", slotProtocol, func(a *activation) string { return a.req.Protocol }),
		objField("destination", dest, func(a *activation) any { return (*destView)(a) },
			func(a *activation) bool { return a.req.Destination != Destination{} }),
		objField("http", http, func(a *activation) any { return (*httpView)(a) },
			func(a *activation) bool {
				h := &a.req.HTTP
				return h.Method != "" || h.URL != "" || h.Path != "" || h.Host != "" || len(h.Headers) > 0 || len(h.Query) > 0
			}),
		objField("k8s", k8s, func(a *activation) any { return (*k8sView)(a) },
			func(a *activation) bool { return a.req.K8s != K8s{} }),
		objField("sql", sql, func(a *activation) any { return (*sqlView)(a) },
			func(a *activation) bool { return a.req.SQL != SQL{} }),
		objField("llm", llm, func(a *activation) any { return (*llmView)(a) },
			func(a *activation) bool { return a.req.LLM != LLM{} }),
	)
	id := newObjType[identityView](typeIdentity,
		func(o any) *activation { v, _ := o.(*identityView); return (*activation)(v) },
		strField("user", slotIDUser, func(a *activation) string { return a.id.User }),
		field{
			name: "groups",
			typ:  types.NewListType(types.StringType),
			get: func(a *activation) any {
				if v := a.vals[slotIDGroups]; v != nil {
					return v
				}
				var v ref.Val = types.NewStringList(types.DefaultTypeAdapter, a.id.Groups)
				a.vals[slotIDGroups] = v
				return v
			},
			isSet: func(a *activation) bool { return len(a.id.Groups) > 0 },
		},
		strField("serviceAccount", slotIDServiceAccount, func(a *activation) string { _, n := serviceAccountName(a.id); return n }),
		strField("namespace", slotIDNamespace, func(a *activation) string { return a.id.Namespace }),
		strField("pod", slotIDPod, func(a *activation) string { return a.id.Pod }),
		field{
			name: "labels",
			typ:  types.NewMapType(types.StringType, types.StringType),
			get: func(a *activation) any {
				if v := a.vals[slotIDLabels]; v != nil { // bound by For
					return v
				}
				return a.id.Labels
			},
			isSet: func(a *activation) bool { return len(a.id.Labels) > 0 },
		},
	)
	return []*objType{dest, http, k8s, sql, llm, req, id}
}
