package api

import (
	"encoding/json"
	"io"
	"net/http"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

// WorkloadTokenMinter mints the NATS token of a session that runs outside
// Kubernetes; *natsauth.LocalIssuer is one.
type WorkloadTokenMinter interface {
	Mint(session string, ttl time.Duration) (string, time.Time, error)
}

// WorkloadTokenRequest is the body of POST /api/v1/workload-tokens.
type WorkloadTokenRequest struct {
	Session string `json:"session"`
	// TTLSeconds is the token's lifetime; zero means the minter's default.
	TTLSeconds int64 `json:"ttl_seconds,omitempty"`
}

// WorkloadToken is the answer: a token that lets a sidecar publish into
// Session and nothing else.
type WorkloadToken struct {
	Session string    `json:"session"`
	Token   string    `json:"token"`
	Expires time.Time `json:"expires"`
}

// maxTokenBody caps the body of a token request.
const maxTokenBody = 4 << 10

func (s *server) workloadToken(w http.ResponseWriter, r *http.Request) {
	if s.tokens == nil {
		writeError(w, http.StatusServiceUnavailable, "this server mints no workload tokens", "")
		return
	}
	var req WorkloadTokenRequest
	raw, err := io.ReadAll(io.LimitReader(r.Body, maxTokenBody+1))
	if err != nil || len(raw) > maxTokenBody {
		writeError(w, http.StatusBadRequest, "body: unreadable or over 4 KiB", "body")
		return
	}
	if err := json.Unmarshal(raw, &req); err != nil {
		writeError(w, http.StatusBadRequest, `body: want JSON {"session": "..."}: `+err.Error(), "body")
		return
	}
	if err := event.ValidSession(req.Session); err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), "session")
		return
	}
	if req.TTLSeconds < 0 {
		writeError(w, http.StatusBadRequest, "ttl_seconds must not be negative", "ttl_seconds")
		return
	}
	tok, exp, err := s.tokens.Mint(req.Session, time.Duration(req.TTLSeconds)*time.Second)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), "ttl_seconds")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, WorkloadToken{Session: req.Session, Token: tok, Expires: exp.UTC()})
}
