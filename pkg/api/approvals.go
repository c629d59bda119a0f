package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/chaperone-dev/chaperone/pkg/approvals"
	"github.com/chaperone-dev/chaperone/pkg/principal"
)

// ApprovalService lists and decides approvals; *approvals.Service is one.
type ApprovalService interface {
	List(ctx context.Context, state string) ([]*approvals.Approval, error)
	Decide(ctx context.Context, id string, p principal.Principal, approve bool, reason, via string) (*approvals.Approval, error)
}

// ApprovalList is the body of GET /api/v1/approvals.
type ApprovalList struct {
	Approvals []*approvals.Approval `json:"approvals"`
}

// DecideRequest is the body of POST /api/v1/approvals/{id}/approve|deny.
type DecideRequest struct {
	Reason string `json:"reason,omitempty"`
}

// maxDecideBody caps the body of a decision.
const maxDecideBody = 64 << 10

const logKeyApproval = "approval"

func (s *server) listApprovals(w http.ResponseWriter, r *http.Request) {
	if s.approvals == nil {
		writeError(w, http.StatusServiceUnavailable, "approvals are not enabled on this server", "")
		return
	}
	state := r.URL.Query().Get("state")
	switch state {
	case "", approvals.StatePending, approvals.StateApproved, approvals.StateDenied, approvals.StateExpired:
	default:
		writeError(w, http.StatusBadRequest, "state: want pending, approved, denied or expired", "state")
		return
	}
	list, err := s.approvals.List(r.Context(), state)
	if err != nil {
		s.approvalError(w, r, "", err)
		return
	}
	writeJSON(w, http.StatusOK, ApprovalList{Approvals: list})
}

func (s *server) approve(w http.ResponseWriter, r *http.Request) { s.decide(w, r, true) }

func (s *server) deny(w http.ResponseWriter, r *http.Request) { s.decide(w, r, false) }

func (s *server) decide(w http.ResponseWriter, r *http.Request, approve bool) {
	if s.approvals == nil {
		writeError(w, http.StatusServiceUnavailable, "approvals are not enabled on this server", "")
		return
	}
	id := r.PathValue("id")
	p, ok := principal.From(r.Context())
	if !ok {
		if !s.localMode {
			writeError(w, http.StatusUnauthorized, "unauthorized: no principal", "")
			return
		}
		p = principal.Local()
	}
	var body DecideRequest
	raw, err := io.ReadAll(io.LimitReader(r.Body, maxDecideBody+1))
	if err != nil || len(raw) > maxDecideBody {
		writeError(w, http.StatusBadRequest, "body: unreadable or over 64 KiB", "body")
		return
	}
	if len(strings.TrimSpace(string(raw))) > 0 {
		if err := json.Unmarshal(raw, &body); err != nil {
			writeError(w, http.StatusBadRequest, "body: want JSON {\"reason\": \"...\"}: "+err.Error(), "body")
			return
		}
	}
	a, err := s.approvals.Decide(r.Context(), id, p, approve, body.Reason, "api")
	if err != nil {
		s.approvalError(w, r, id, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

// approvalError answers a refusal with its status and logs it; other
// errors are a logged 500.
func (s *server) approvalError(w http.ResponseWriter, r *http.Request, id string, err error) {
	status := approvals.StatusOf(err)
	if status == http.StatusInternalServerError {
		if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
			return
		}
		rid := requestIDFrom(r.Context())
		s.log.ErrorContext(r.Context(), "api approvals error", logKeyPath, r.URL.Path, logKeyRequestID, rid, logKeyError, err)
		writeError(w, status, "internal error (request "+rid+")", "")
		return
	}
	s.log.WarnContext(r.Context(), "api approval refused", logKeyApproval, id, logKeyStatus, status, logKeyError, err.Error(),
		logKeyRequestID, requestIDFrom(r.Context()))
	writeError(w, status, err.Error(), "")
}

func (s *server) slackCallback(w http.ResponseWriter, r *http.Request) {
	if s.slack == nil {
		writeError(w, http.StatusNotFound, "slack callbacks are not enabled on this server", "")
		return
	}
	s.slack.ServeHTTP(w, r)
}
