package policy

import (
	"strings"

	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"
)

// guard is a necessary condition of a rule's match that Go can test
// without CEL: a top-level conjunct of the match that compares a string
// field with constants (`request.k8s.verb == "delete"`,
// `request.k8s.verb in ["delete", "deletecollection"]`,
// `request.http.path.startsWith("/admin/")`). A request that fails it
// cannot match the rule — in CEL `false && x` is false whatever x is, even
// an error — so Decide skips the rule's evaluation. Most rules of a real
// policy test a field the request does not have (a SQL rule on a
// Kubernetes request), and their guards reject them in nanoseconds.
//
// A guard is also exact: the field reads cannot fail (every section and
// string field is always present, empty when unset), so the request passes
// the guard exactly when the conjunct is true. A match made only of guards
// is therefore decided in Go without running CEL (see guardsOf).
type guard struct {
	get func(*activation) string
	// values lists the constants the field must equal one of; when nil,
	// the field must start with prefix.
	values []string
	prefix string
}

// pass reports whether the request in a may match.
func (g *guard) pass(a *activation) bool {
	v := g.get(a)
	if g.values == nil {
		return strings.HasPrefix(v, g.prefix)
	}
	for _, w := range g.values {
		if v == w {
			return true
		}
	}
	return false
}

// stringFields reads the string fields of the request and identity by
// their path in rules, as their CEL views do (see objTypes).
var stringFields = map[string]func(*activation) string{
	"request.protocol":         func(a *activation) string { return a.req.Protocol },
	"request.destination.host": func(a *activation) string { return a.req.Destination.Host },
	"request.destination.ip":   func(a *activation) string { return a.req.Destination.IP },
	"request.http.method":      func(a *activation) string { return a.req.HTTP.Method },
	"request.http.url":         func(a *activation) string { return a.req.HTTP.URL },
	"request.http.path":        func(a *activation) string { return a.req.HTTP.Path },
	"request.http.host":        func(a *activation) string { return a.req.HTTP.Host },
	"request.k8s.verb":         func(a *activation) string { return a.req.K8s.Verb },
	"request.k8s.apiGroup":     func(a *activation) string { return a.req.K8s.APIGroup },
	"request.k8s.apiVersion":   func(a *activation) string { return a.req.K8s.APIVersion },
	"request.k8s.resource":     func(a *activation) string { return a.req.K8s.Resource },
	"request.k8s.subresource":  func(a *activation) string { return a.req.K8s.Subresource },
	"request.k8s.namespace":    func(a *activation) string { return a.req.K8s.Namespace },
	"request.k8s.name":         func(a *activation) string { return a.req.K8s.Name },
	"request.sql.statement":    func(a *activation) string { return a.req.SQL.Statement },
	"request.sql.database":     func(a *activation) string { return a.req.SQL.Database },
	"request.sql.user":         func(a *activation) string { return a.req.SQL.User },
	"request.llm.provider":     func(a *activation) string { return a.req.LLM.Provider },
	"request.llm.model":        func(a *activation) string { return a.req.LLM.Model },
	"identity.user":            func(a *activation) string { return a.id.User },
	"identity.namespace":       func(a *activation) string { return a.id.Namespace },
	"identity.pod":             func(a *activation) string { return a.id.Pod },
	"identity.serviceAccount":  func(a *activation) string { _, n := serviceAccountName(a.id); return n },
	"request.sql.command": func(a *activation) string {
		if a.req.SQL.Command == "" {
			return SQLCommand(a.req.SQL.Statement)
		}
		return a.req.SQL.Command
	},
}

// guardsOf finds the guards of a checked match expression. exact reports
// that every top-level conjunct is a guard, so that the guards passing is
// the match being true.
func guardsOf(e celast.Expr) (guards []*guard, exact bool) {
	exact = true
	for _, c := range conjuncts(e, nil) {
		if g := guardOf(c); g != nil {
			guards = append(guards, g)
		} else {
			exact = false
		}
	}
	return guards, exact && len(guards) > 0
}

// conjuncts flattens the top-level && of e.
func conjuncts(e celast.Expr, out []celast.Expr) []celast.Expr {
	if e.Kind() == celast.CallKind {
		if c := e.AsCall(); c.FunctionName() == operators.LogicalAnd && !c.IsMemberFunction() && len(c.Args()) == 2 {
			return conjuncts(c.Args()[1], conjuncts(c.Args()[0], out))
		}
	}
	return append(out, e)
}

func guardOf(e celast.Expr) *guard {
	if e.Kind() != celast.CallKind {
		return nil
	}
	c := e.AsCall()
	args := c.Args()
	switch {
	case c.FunctionName() == operators.Equals && len(args) == 2:
		for _, pair := range [][2]celast.Expr{{args[0], args[1]}, {args[1], args[0]}} {
			get := fieldOf(pair[0])
			lit, ok := stringLit(pair[1])
			if get != nil && ok {
				return &guard{get: get, values: []string{lit}}
			}
		}
	case c.FunctionName() == operators.In && len(args) == 2:
		get := fieldOf(args[0])
		if get == nil || args[1].Kind() != celast.ListKind {
			return nil
		}
		l := args[1].AsList()
		if len(l.OptionalIndices()) > 0 {
			return nil
		}
		values := make([]string, 0, len(l.Elements()))
		for _, el := range l.Elements() {
			s, ok := stringLit(el)
			if !ok {
				return nil
			}
			values = append(values, s)
		}
		return &guard{get: get, values: values}
	case c.FunctionName() == "startsWith" && c.IsMemberFunction() && len(args) == 1:
		get := fieldOf(c.Target())
		lit, ok := stringLit(args[0])
		if get != nil && ok {
			return &guard{get: get, prefix: lit}
		}
	}
	return nil
}

// fieldOf returns the reader of a string field selected by e
// (`request.k8s.verb`), or nil.
func fieldOf(e celast.Expr) func(*activation) string {
	var parts []string
	for e.Kind() == celast.SelectKind {
		s := e.AsSelect()
		if s.IsTestOnly() {
			return nil
		}
		parts = append(parts, s.FieldName())
		e = s.Operand()
	}
	if e.Kind() != celast.IdentKind {
		return nil
	}
	path := e.AsIdent()
	for i := len(parts) - 1; i >= 0; i-- {
		path += "." + parts[i]
	}
	return stringFields[path]
}

func stringLit(e celast.Expr) (string, bool) {
	if e.Kind() != celast.LiteralKind {
		return "", false
	}
	s, ok := e.AsLiteral().(types.String)
	return string(s), ok
}
