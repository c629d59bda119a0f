package policy

import (
	"net/http"
	"net/url"
	"strings"
)

// Request is what the sidecar knows about one request, filled from its
// decoders. Sections that do not apply stay zero. Policy.Decide reads it and
// does not keep it.
type Request struct {
	// Protocol is what the sidecar recognised: "http1", "http2", "tcp",
	// "tls" or "postgres".
	Protocol    string
	Destination Destination
	HTTP        HTTP
	K8s         K8s
	SQL         SQL
	LLM         LLM
}

// Destination is the far end of the connection.
type Destination struct {
	// Host is the name the client asked for (TLS SNI or HTTP Host).
	Host string
	// IP is the original destination address, as text.
	IP   string
	Port int
}

// HTTP is a decoded HTTP request.
type HTTP struct {
	Method string
	// URL is the request URL as far as it is known: scheme and host
	// included when the sidecar knows them.
	URL  string
	Path string
	Host string
	// Headers maps lowercased header names to their first value
	// (HeadersFrom builds it).
	Headers map[string]string
	// Query maps query parameters to their first value (QueryFrom builds it).
	Query map[string]string
}

// K8s is a Kubernetes API request, decoded from the HTTP request.
type K8s struct {
	Verb        string
	APIGroup    string
	APIVersion  string
	Resource    string
	Subresource string
	Namespace   string
	Name        string
}

// SQL is a decoded SQL statement.
type SQL struct {
	Statement string
	// Command is the statement's first keyword, uppercased. When empty it
	// is derived from Statement (SQLCommand).
	Command  string
	Database string
	User     string
}

// LLM is a request to a language model API.
type LLM struct {
	Provider string
	Model    string
}

// Identity is who is behind the session. It selects policies (Set.For) and
// is visible to rules as `identity`.
type Identity struct {
	// User is the human who created or last changed the workload.
	User   string
	Groups []string
	// ServiceAccount is the pod's service account: its name, or the full
	// "system:serviceaccount:NAMESPACE:NAME" form.
	ServiceAccount string
	Namespace      string
	Pod            string
	Labels         map[string]string
}

// HeadersFrom returns the lowercased-name → first-value map of h.
func HeadersFrom(h http.Header) map[string]string {
	if len(h) == 0 {
		return nil
	}
	m := make(map[string]string, len(h))
	for k, v := range h {
		if len(v) > 0 {
			m[strings.ToLower(k)] = v[0]
		}
	}
	return m
}

// QueryFrom returns the parameter → first-value map of a raw query string;
// malformed pairs are skipped.
func QueryFrom(rawQuery string) map[string]string {
	if rawQuery == "" {
		return nil
	}
	v, _ := url.ParseQuery(rawQuery) //nolint:errcheck // keeps the pairs that parse
	m := make(map[string]string, len(v))
	for k, vs := range v {
		if len(vs) > 0 {
			m[k] = vs[0]
		}
	}
	return m
}

// SQLCommand returns the first keyword of a SQL statement, uppercased,
// skipping leading white space, comments and parentheses: "SELECT" for
// "/* x */ (select 1)".
func SQLCommand(stmt string) string {
	s := stmt
	for {
		s = strings.TrimLeft(s, " \t\r\n\f(;")
		switch {
		case strings.HasPrefix(s, "--"):
			i := strings.IndexByte(s, '\n')
			if i < 0 {
				return ""
			}
			s = s[i+1:]
		case strings.HasPrefix(s, "/*"):
			i := strings.Index(s[2:], "*/")
			if i < 0 {
				return ""
			}
			s = s[i+4:]
		default:
			end := 0
			for end < len(s) && isWordByte(s[end]) {
				end++
			}
			w := s[:end]
			for i := 0; i < len(w); i++ {
				if c := w[i]; c >= 'a' && c <= 'z' {
					return strings.ToUpper(w)
				}
			}
			return w
		}
	}
}

func isWordByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// serviceAccountName splits the service account of an identity into
// namespace (may be empty) and name.
func serviceAccountName(id *Identity) (ns, name string) {
	sa := id.ServiceAccount
	if rest, ok := strings.CutPrefix(sa, "system:serviceaccount:"); ok {
		if ns, name, ok := strings.Cut(rest, ":"); ok {
			return ns, name
		}
	}
	return id.Namespace, sa
}
