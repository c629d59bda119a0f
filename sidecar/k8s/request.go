package k8s

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

// Verbs of resource requests, as the API server's audit log names them.
const (
	VerbGet              = "get"
	VerbList             = "list"
	VerbWatch            = "watch"
	VerbCreate           = "create"
	VerbUpdate           = "update"
	VerbPatch            = "patch"
	VerbDelete           = "delete"
	VerbDeleteCollection = "deletecollection"
	VerbProxy            = "proxy"
)

// Request is a decoded API server request: RequestInfo's fields.
type Request struct {
	// IsResource is false for non-resource URLs (/healthz, /version,
	// /apis discovery); their Verb is the lowercased method.
	IsResource bool
	// Path is the URL path without the query.
	Path        string
	Verb        string
	APIPrefix   string
	APIGroup    string
	APIVersion  string
	Namespace   string
	Resource    string
	Subresource string
	Name        string
}

// Event returns r as an event payload for the HTTP/1 message or HTTP/2
// stream stream.
func (r Request) Event(stream uint64) *event.K8sRequest {
	return &event.K8sRequest{
		Stream:      stream,
		Verb:        r.Verb,
		APIGroup:    r.APIGroup,
		APIVersion:  r.APIVersion,
		Resource:    r.Resource,
		Subresource: r.Subresource,
		Namespace:   r.Namespace,
		Name:        r.Name,
	}
}

// Secret reports whether r reads or writes Secrets (core group): their
// bodies are masked.
func (r Request) Secret() bool {
	return r.IsResource && r.APIGroup == "" && r.Resource == "secrets" && r.Subresource == ""
}

// specialVerbs come first in a path: /api/v1/watch/..., /api/v1/proxy/...
// (both deprecated, still served).
var specialVerbs = map[string]bool{"proxy": true, "watch": true}

// namespaceSubresources follow a namespace's name without being resources
// of their own.
var namespaceSubresources = map[string]bool{"status": true, "finalize": true}

// Decode decodes a request by method and target (origin form "/path?q",
// or an absolute URL), by the rules of k8s.io/apiserver's
// RequestInfoFactory with the API prefixes "api" (groupless) and "apis".
// ok is false when target does not parse as a URL.
func Decode(method, target string) (r Request, ok bool) {
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return Request{}, false
	}
	r.Path = u.Path
	r.Verb = strings.ToLower(method)
	parts := splitPath(u.Path)
	if len(parts) < 3 || (parts[0] != "api" && parts[0] != "apis") {
		return r, true // non-resource
	}
	r.APIPrefix = parts[0]
	parts = parts[1:]
	if r.APIPrefix == "apis" {
		if len(parts) < 3 {
			return r, true
		}
		r.APIGroup = parts[0]
		parts = parts[1:]
	}
	r.IsResource = true
	r.APIVersion = parts[0]
	parts = parts[1:]

	special := false
	if specialVerbs[parts[0]] {
		if len(parts) < 2 {
			// The API server rejects this; record what it is.
			r.Verb = parts[0]
			return r, true
		}
		r.Verb = parts[0]
		parts = parts[1:]
		special = true
	} else {
		r.Verb = methodVerb(method)
	}

	if parts[0] == "namespaces" {
		if len(parts) > 1 {
			r.Namespace = parts[1]
			if len(parts) > 2 && !namespaceSubresources[parts[2]] {
				parts = parts[2:]
			}
		}
	}
	switch {
	case len(parts) >= 3 && r.Verb != VerbProxy:
		r.Subresource = parts[2]
		fallthrough
	case len(parts) >= 2:
		r.Name = parts[1]
		fallthrough
	case len(parts) >= 1:
		r.Resource = parts[0]
	}

	if r.Name == "" && r.Verb == VerbGet && !special {
		q := u.Query()
		r.Verb = VerbList
		if isTrue(q["watch"]) {
			r.Verb = VerbWatch
		}
		if name, ok := fieldName(q.Get("fieldSelector")); ok && validSegment(name) {
			r.Name = name
		}
	}
	if r.Name == "" && r.Verb == VerbDelete {
		r.Verb = VerbDeleteCollection
	}
	return r, true
}

// methodVerb maps a method to the verb of a request that names no special
// verb in its path.
func methodVerb(method string) string {
	switch method {
	case http.MethodPost:
		return VerbCreate
	case http.MethodGet, http.MethodHead:
		return VerbGet
	case http.MethodPut:
		return VerbUpdate
	case http.MethodPatch:
		return VerbPatch
	case http.MethodDelete:
		return VerbDelete
	}
	return ""
}

// splitPath splits a path like the API server does: trimmed of slashes,
// then on every slash.
func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// isTrue reads a boolean query parameter as the API server's parameter
// codec does: absent, empty, "0" and "false" are false.
func isTrue(vs []string) bool {
	if len(vs) == 0 {
		return false
	}
	v := vs[0]
	return v != "" && v != "0" && !strings.EqualFold(v, "false")
}

// fieldName returns the value a field selector requires metadata.name to
// equal exactly, if it does.
func fieldName(sel string) (string, bool) {
	for _, term := range splitTerms(sel) {
		field, value, ok := cutOp(term)
		if ok && strings.TrimSpace(field) == "metadata.name" {
			return unescape(value), true
		}
	}
	return "", false
}

// splitTerms splits a selector on commas that are not escaped.
func splitTerms(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case ',':
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// cutOp splits "field=value" or "field==value"; "!=" is no exact match.
func cutOp(term string) (field, value string, ok bool) {
	for i := 0; i < len(term); i++ {
		switch term[i] {
		case '\\':
			i++
		case '!':
			if i+1 < len(term) && term[i+1] == '=' {
				return "", "", false
			}
		case '=':
			value = strings.TrimPrefix(term[i+1:], "=")
			return term[:i], value, true
		}
	}
	return "", "", false
}

func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// validSegment mirrors path.IsValidPathSegmentName: a name usable as one
// path segment.
func validSegment(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/%")
}
