package api

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/chaperone-dev/chaperone/pkg/principal"
	"github.com/chaperone-dev/chaperone/pkg/store"
)

// TokenVerifier turns a bearer token into a principal with its roles. An
// error means the token is refused; its text is sent back to the client
// and logged.
type TokenVerifier interface {
	Verify(ctx context.Context, token string) (principal.Principal, error)
}

// Log keys of the access audit.
const (
	logKeyPrincipal = "principal"
	logKeySubject   = "subject"
	logKeyRoles     = "roles"
	logKeyReason    = "reason"
)

// publicPaths are served without authentication: probes, metrics, the API
// description, and callbacks that carry their own signature.
var publicPaths = []string{"/healthz", "/readyz", "/metrics", "/openapi.json"}

func isPublic(path string) bool {
	return slices.Contains(publicPaths, path) || strings.HasPrefix(path, "/callbacks/")
}

// requiredRole is the role a route needs; empty means any authenticated
// principal. Routes this list does not know need admin, so a route added
// without thought is closed rather than open.
func requiredRole(path string) principal.Role {
	switch {
	case path == "/api/v1/info":
		return ""
	case path == "/api/v1/sessions", strings.HasPrefix(path, "/api/v1/sessions/"),
		strings.HasPrefix(path, "/api/v1/blobs/"):
		return principal.RoleAuditor
	case path == "/api/v1/approvals", strings.HasPrefix(path, "/api/v1/approvals/"):
		return principal.RoleApprover
	default:
		return principal.RoleAdmin
	}
}

// authorize authenticates r for the route pattern and checks the route's
// role. It answers 401 or 403 itself and returns false then; otherwise it
// returns r carrying the principal. Without a verifier every caller is the
// local administrator: that is local mode, where the server listens on
// loopback only.
func (s *server) authorize(w http.ResponseWriter, r *http.Request, pattern string) (*http.Request, bool) {
	path := routeLabel(pattern)
	if isPublic(path) {
		return r, true
	}
	var p principal.Principal
	if s.verifier == nil {
		p = principal.Local()
	} else {
		tok, ok := bearerToken(r)
		if !ok {
			s.refuse(w, r, path, "no bearer token", `Bearer realm="chaperone"`)
			return r, false
		}
		var err error
		p, err = s.verifier.Verify(r.Context(), tok)
		if err != nil {
			s.refuse(w, r, path, err.Error(), `Bearer realm="chaperone", error="invalid_token"`)
			return r, false
		}
	}
	r = r.WithContext(principal.With(r.Context(), p))
	if need := requiredRole(path); need != "" && !p.Has(need) {
		writeError(w, http.StatusForbidden, "forbidden: "+string(need)+" role required", "")
		return r, false
	}
	return r, true
}

// refuse answers 401 and logs why.
func (s *server) refuse(w http.ResponseWriter, r *http.Request, route, reason, challenge string) {
	s.log.WarnContext(r.Context(), "api authentication refused",
		logKeyRoute, route, logKeyPath, r.URL.Path, logKeyReason, reason,
		logKeyRequestID, requestIDFrom(r.Context()))
	w.Header().Set("WWW-Authenticate", challenge)
	writeError(w, http.StatusUnauthorized, "unauthorized: "+reason, "")
}

// bearerToken reads "Authorization: Bearer TOKEN".
func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// scoped wraps a route's handler: for a principal limited to namespaces, a
// session outside them answers 404 as if it did not exist, and a list is
// narrowed to the one namespace when there is only one.
func (s *server) scoped(path string, h http.HandlerFunc) http.HandlerFunc {
	switch {
	case strings.HasPrefix(path, "/api/v1/sessions/{id}"):
		return func(w http.ResponseWriter, r *http.Request) {
			p, _ := principal.From(r.Context())
			if !p.Limited() {
				h(w, r)
				return
			}
			id := r.PathValue("id")
			sess, err := s.store.Session(r.Context(), id)
			if err != nil {
				s.storeError(w, r, "session "+id, err)
				return
			}
			if !p.CanSeeNamespace(sess.Namespace) {
				writeError(w, http.StatusNotFound, "session "+id+" not found", "")
				return
			}
			h(w, r)
		}
	case path == "/api/v1/sessions":
		return func(w http.ResponseWriter, r *http.Request) {
			p, _ := principal.From(r.Context())
			if !p.Limited() {
				h(w, r)
				return
			}
			q := r.URL.Query()
			if ns := q.Get("namespace"); ns != "" {
				if !p.CanSeeNamespace(ns) {
					writeJSON(w, http.StatusOK, store.SessionPage{Sessions: []store.Session{}})
					return
				}
			} else if len(p.Namespaces) == 1 {
				q.Set("namespace", p.Namespaces[0])
				r.URL.RawQuery = q.Encode()
			}
			h(w, r)
		}
	default:
		return h
	}
}

// visibleSessions drops the sessions the request's principal may not see.
// scoped narrows the query when it can; this catches the rest (several
// namespaces), at the cost of short pages.
func visibleSessions(ctx context.Context, sessions []store.Session) []store.Session {
	p, _ := principal.From(ctx)
	if !p.Limited() {
		return sessions
	}
	return slices.DeleteFunc(sessions, func(s store.Session) bool { return !p.CanSeeNamespace(s.Namespace) })
}

// audit records one access to an authenticated route: a log line naming
// the principal, and a counter by role, route and status. The counter keeps
// people's names out of metrics (and its label set bounded); the log line is
// the audit trail.
func (s *server) audit(r *http.Request, w *recorder, route string) {
	if isPublic(route) || route == "unmatched" {
		return
	}
	status := w.status
	if status == 0 {
		status = http.StatusOK
	}
	p, ok := principal.From(r.Context())
	name := "anonymous"
	if ok {
		name = p.Name()
	}
	s.accessCounter.WithLabelValues(metricRole(ok, p), route, r.Method, strconv.Itoa(status)).Inc()
	roles := make([]string, len(p.Roles))
	for i, role := range p.Roles {
		roles[i] = string(role)
	}
	s.log.InfoContext(r.Context(), "api access",
		logKeyPrincipal, name, logKeySubject, p.Subject, logKeyRoles, roles,
		logKeyMethod, r.Method, logKeyRoute, route, logKeyPath, r.URL.Path,
		logKeyStatus, status, logKeyRequestID, requestIDFrom(r.Context()))
}

func newAccessCounter(reg prometheus.Registerer) *prometheus.CounterVec {
	return register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "chaperone",
		Subsystem: "api",
		Name:      "access_total",
		Help:      "Authenticated-route API accesses, by the caller's highest role (anonymous when refused), route, method and status code.",
	}, []string{"role", "route", "method", "code"}))
}

// metricRole names the highest role of a caller for the access counter.
func metricRole(ok bool, p principal.Principal) string {
	if !ok {
		return "anonymous"
	}
	for _, r := range []principal.Role{principal.RoleAdmin, principal.RoleApprover, principal.RoleAuditor} {
		if p.Has(r) {
			return string(r)
		}
	}
	return "none"
}
