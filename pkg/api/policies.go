package api

import (
	"context"
	"io"
	"net/http"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/policy"
)

// SessionPolicyPublisher distributes the policy of one session alone;
// *server.Distributor is one. A nil set withdraws it.
type SessionPolicyPublisher interface {
	PutSession(ctx context.Context, session string, set *policy.Set) error
}

// maxPolicyBody caps a SessionPolicy document set.
const maxPolicyBody = 1 << 20

// SessionPolicyResult answers PUT /api/v1/session-policies/{session}.
type SessionPolicyResult struct {
	Session  string   `json:"session"`
	Hash     string   `json:"hash"`
	Policies []string `json:"policies"`
}

// putSessionPolicy compiles the SessionPolicy YAML of the body and, when it
// compiles, distributes it for the session: the sidecar of that session
// decides with it until it is deleted. A policy that does not load or
// compile is a 400 naming the document, rule and error; nothing changes.
func (s *server) putSessionPolicy(w http.ResponseWriter, r *http.Request) {
	session, ok := s.policySession(w, r)
	if !ok {
		return
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, maxPolicyBody+1))
	if err != nil || len(raw) > maxPolicyBody {
		writeError(w, http.StatusBadRequest, "body: unreadable or over 1 MiB", "body")
		return
	}
	ps, err := policy.Parse(raw)
	if err != nil {
		writeError(w, http.StatusBadRequest, "body: "+err.Error(), "body")
		return
	}
	if len(ps) == 0 {
		writeError(w, http.StatusBadRequest, "body: no SessionPolicy (DELETE withdraws a session's policy)", "body")
		return
	}
	set, err := policy.Compile(ps)
	if err != nil {
		writeError(w, http.StatusBadRequest, "body: "+err.Error(), "body")
		return
	}
	if err := s.policies.PutSession(r.Context(), session, set); err != nil {
		s.log.ErrorContext(r.Context(), "distribute session policy", "session", session, "err", err)
		writeError(w, http.StatusServiceUnavailable, "distribute policy: "+err.Error(), "")
		return
	}
	names := make([]string, 0, len(ps))
	for _, p := range ps {
		names = append(names, p.Name)
	}
	writeJSON(w, http.StatusOK, SessionPolicyResult{Session: session, Hash: set.Hash(), Policies: names})
}

// deleteSessionPolicy withdraws a session's own policy; the cluster policy
// applies to it again.
func (s *server) deleteSessionPolicy(w http.ResponseWriter, r *http.Request) {
	session, ok := s.policySession(w, r)
	if !ok {
		return
	}
	if err := s.policies.PutSession(r.Context(), session, nil); err != nil {
		s.log.ErrorContext(r.Context(), "withdraw session policy", "session", session, "err", err)
		writeError(w, http.StatusServiceUnavailable, "withdraw policy: "+err.Error(), "")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) policySession(w http.ResponseWriter, r *http.Request) (string, bool) {
	if s.policies == nil {
		writeError(w, http.StatusServiceUnavailable, "this server distributes no policy", "")
		return "", false
	}
	if _, perr := query(r); perr != nil {
		writeParamError(w, perr)
		return "", false
	}
	session := r.PathValue("session")
	if err := event.ValidSession(session); err != nil {
		writeError(w, http.StatusBadRequest, "session: "+err.Error(), "session")
		return "", false
	}
	return session, true
}
