package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/chaperone-dev/chaperone/pkg/store"
)

// Error is the body of every error response.
type Error struct {
	// Error says what went wrong.
	Error string `json:"error"`
	// Param names the query parameter, path parameter or header at fault,
	// for 400 answers.
	Param string `json:"param,omitempty"`
}

// paramError is a bad request caused by one named parameter.
type paramError struct {
	param string
	msg   string
}

func (e *paramError) Error() string { return e.param + ": " + e.msg }

func badParam(param, msg string) *paramError { return &paramError{param: param, msg: msg} }

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own response types get here; they always marshal.
		status = http.StatusInternalServerError
		b = []byte(`{"error":"encode response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, status int, msg, param string) {
	writeJSON(w, status, Error{Error: msg, Param: param})
}

func writeParamError(w http.ResponseWriter, err *paramError) {
	writeError(w, http.StatusBadRequest, err.Error(), err.param)
}

// storeError answers a store failure: 404 for ErrNotFound, 400 for a bad
// cursor, nothing for a client that went away, and a logged 500 that does
// not leak internals for the rest.
func (s *server) storeError(w http.ResponseWriter, r *http.Request, what string, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, what+" not found", "")
	case errors.Is(err, store.ErrBadCursor):
		writeError(w, http.StatusBadRequest, "cursor: not a cursor this server issued", "cursor")
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client is gone; there is no one to answer.
	default:
		id := requestIDFrom(r.Context())
		s.log.ErrorContext(r.Context(), "api store error",
			logKeyPath, r.URL.Path, logKeyRequestID, id, logKeyError, err)
		writeError(w, http.StatusInternalServerError, "internal error (request "+id+")", "")
	}
}
