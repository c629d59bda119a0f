// Package policy compiles SessionPolicy objects and decides, locally and in
// microseconds, what happens to each request an agent makes.
//
// A sidecar loads policies (LoadFile, or Unmarshal of the bundle the server
// distributes), compiles them once (Compile), selects the policies for its
// agent's identity once per session (Set.For), and then asks for a Decision
// per request (Policy.Decide) after filling a Request from its decoders.
//
// Rule match expressions are CEL over two variables, `request` and
// `identity`, whose fields are declared types: a misspelt field is a
// compile error, not a silent false. Sections that do not apply to a request
// (request.k8s on a PostgreSQL query, request.http on raw TCP) are present
// but empty, so `request.k8s.verb == "delete"` is simply false there; use
// has() to ask whether a section or field is set:
//
//	has(request.k8s.verb) && request.k8s.verb in ["delete", "deletecollection"]
//
// The fields are:
//
//	request.protocol            "http1", "http2", "tcp", "tls", "postgres"
//	request.destination.host    name the client asked for (SNI, Host)
//	request.destination.ip      original destination IP, as text
//	request.destination.port    original destination port (int)
//	request.http.method         "GET", "POST", …
//	request.http.url            full URL as sent, scheme and host included when known
//	request.http.path           path without the query
//	request.http.host           Host header (or :authority)
//	request.http.headers        map of lowercased name → first value
//	request.http.query          map of query parameter → first value
//	request.k8s.verb            "get", "list", "watch", "create", "update", "patch", "delete", …
//	request.k8s.apiGroup        "" for the core group, "apps", …
//	request.k8s.apiVersion      "v1", …
//	request.k8s.resource        "pods", "secrets", …
//	request.k8s.subresource     "exec", "log", …
//	request.k8s.namespace       namespace of the object, "" for cluster scope
//	request.k8s.name            object name, "" for collections
//	request.sql.statement       the SQL text
//	request.sql.command         its first keyword, uppercased: "SELECT", "DROP", …
//	request.sql.database        database of the connection
//	request.sql.user            database user of the connection
//	request.llm.provider        "openai", "anthropic", …
//	request.llm.model           model name as requested
//	identity.user               the human behind the workload
//	identity.groups             that human's groups (list of string)
//	identity.serviceAccount     the pod's service account name
//	identity.namespace          the pod's namespace
//	identity.pod                the pod's name
//	identity.labels             the pod's labels (map of string → string)
//
// The standard CEL library and the strings extension (lowerAscii, split,
// …) are available. Each evaluation has a cost limit (CostLimit); a rule
// whose evaluation fails is skipped if it would allow, and applies if it
// would deny or hold, so a broken rule fails closed.
package policy
