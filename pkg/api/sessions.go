package api

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strconv"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/principal"
	"github.com/chaperone-dev/chaperone/pkg/store"
)

// Info is the body of GET /api/v1/info.
type Info struct {
	Version   string `json:"version"`
	NATS      string `json:"nats"`
	LocalMode bool   `json:"local_mode"`
}

// Status is the body of /healthz and a passing /readyz.
type Status struct {
	Status string `json:"status"`
	// Error is why the server is not ready, on a 503 from /readyz.
	Error string `json:"error,omitempty"`
}

// pageSize is how many events one store read returns. Streams read the
// store page by page so no store cursor stays open while a slow client or
// a replay delay holds the stream.
const pageSize = 256

var blobRefRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

func (s *server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, Status{Status: "ok"})
}

func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if err := s.ready(ctx); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, Status{Status: "not ready", Error: err.Error()})
			return
		}
	}
	writeJSON(w, http.StatusOK, Status{Status: "ready"})
}

func (s *server) openAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(openAPIDoc)
}

func (s *server) info(w http.ResponseWriter, r *http.Request) {
	if _, perr := query(r); perr != nil {
		writeParamError(w, perr)
		return
	}
	writeJSON(w, http.StatusOK, Info{Version: s.version, NATS: s.natsURL, LocalMode: s.localMode})
}

func (s *server) listSessions(w http.ResponseWriter, r *http.Request) {
	q, perr := parseSessionQuery(r, s.now())
	if perr != nil {
		writeParamError(w, perr)
		return
	}
	page, err := s.store.Sessions(r.Context(), q)
	if err != nil {
		s.storeError(w, r, "sessions", err)
		return
	}
	page.Sessions = visibleSessions(r.Context(), page.Sessions)
	if page.Sessions == nil {
		page.Sessions = []store.Session{}
	}
	writeJSON(w, http.StatusOK, page)
}

func (s *server) getSession(w http.ResponseWriter, r *http.Request) {
	id, perr := sessionID(r)
	if perr == nil {
		_, perr = query(r)
	}
	if perr != nil {
		writeParamError(w, perr)
		return
	}
	sess, err := s.store.Session(r.Context(), id)
	if err != nil {
		s.storeError(w, r, "session "+id, err)
		return
	}
	writeJSON(w, http.StatusOK, sess)
}

func (s *server) verify(w http.ResponseWriter, r *http.Request) {
	id, perr := sessionID(r)
	if perr == nil {
		_, perr = query(r)
	}
	if perr != nil {
		writeParamError(w, perr)
		return
	}
	res, err := s.store.Verify(r.Context(), id)
	if err != nil {
		s.storeError(w, r, "session "+id, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *server) blob(w http.ResponseWriter, r *http.Request) {
	ref := r.PathValue("ref")
	if !blobRefRE.MatchString(ref) {
		writeError(w, http.StatusBadRequest, "ref: want sha256:<64 lowercase hex digits>", "ref")
		return
	}
	q, perr := query(r, "session")
	if perr != nil {
		writeParamError(w, perr)
		return
	}
	if !s.blobVisible(w, r, ref, q.Get("session")) {
		return
	}
	data, err := s.store.Blob(r.Context(), ref)
	if err != nil {
		s.storeError(w, r, "blob "+ref, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.Itoa(len(data)))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Disposition", "attachment")
	// A ref names its content, so the bytes never change.
	h.Set("ETag", `"`+ref+`"`)
	h.Set("Cache-Control", "private, max-age=31536000, immutable")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data) //nolint:gosec // served as an octet-stream attachment with nosniff, never rendered
}

// sessionEvents streams a session's events as JSON lines in chain order.
func (s *server) sessionEvents(w http.ResponseWriter, r *http.Request) {
	id, perr := sessionID(r)
	var q map[string][]string
	if perr == nil {
		q, perr = query(r, "after")
	}
	var after uint64
	if perr == nil {
		after, perr = parseIndex("after", first(q, "after"))
	}
	if perr != nil {
		writeParamError(w, perr)
		return
	}
	// Check the session first: once the stream starts, the status is sent.
	if _, err := s.store.Session(r.Context(), id); err != nil {
		s.storeError(w, r, "session "+id, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	err := s.eachPage(r.Context(), id, after, func(batch []*event.Event) error {
		for _, e := range batch {
			b, err := event.Encode(e)
			if err != nil {
				return err
			}
			if _, err := w.Write(append(b, '\n')); err != nil {
				return err
			}
		}
		return rc.Flush()
	})
	if err != nil {
		s.abortStream(r, id, err)
	}
}

// abortStream ends a stream that broke after its headers went out. The
// client must not mistake a cut stream for a complete one, so the
// connection is dropped rather than ended cleanly.
func (s *server) abortStream(r *http.Request, session string, err error) {
	if r.Context().Err() == nil {
		s.log.ErrorContext(r.Context(), "api stream broken",
			logKeyPath, r.URL.Path, logKeySession, session,
			logKeyRequestID, requestIDFrom(r.Context()), logKeyError, err)
	}
	panic(http.ErrAbortHandler)
}

var errPageFull = errors.New("page full")

// eachPage reads the session's events after `after` from the store in
// pages and hands each page to fn outside the store call.
func (s *server) eachPage(ctx context.Context, session string, after uint64, fn func([]*event.Event) error) error {
	for {
		batch := make([]*event.Event, 0, pageSize)
		err := s.store.Events(ctx, session, after, func(e *event.Event) error {
			batch = append(batch, e)
			if len(batch) == pageSize {
				return errPageFull
			}
			return nil
		})
		if err != nil && !errors.Is(err, errPageFull) {
			return err
		}
		if len(batch) == 0 {
			return nil
		}
		last := batch[len(batch)-1]
		if last.Chain == nil || last.Chain.Index <= after {
			return errors.New("store returned an event without a chain index past the cursor")
		}
		after = last.Chain.Index
		if err := fn(batch); err != nil {
			return err
		}
		if len(batch) < pageSize {
			return nil
		}
	}
}

func first(q map[string][]string, name string) string {
	if vs := q[name]; len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// blobVisible checks that the caller may read blob ref. A blob is content,
// not a session, so a reader limited to namespaces names the session whose
// event refers to it (?session=), and reads it only when that session is
// theirs and does refer to it. Anyone may name a session; then the same
// check applies. It writes the error response and returns false otherwise.
func (s *server) blobVisible(w http.ResponseWriter, r *http.Request, ref, session string) bool {
	p, _ := principal.From(r.Context())
	if session == "" {
		if p.Limited() {
			writeError(w, http.StatusBadRequest, "session: required for a reader limited to namespaces (the session whose event names the blob)", "session")
			return false
		}
		return true
	}
	if err := event.ValidSession(session); err != nil {
		writeError(w, http.StatusBadRequest, "session: "+err.Error(), "session")
		return false
	}
	notFound := func() bool {
		writeError(w, http.StatusNotFound, "blob "+ref+" not found in session "+session, "")
		return false
	}
	if p.Limited() {
		sess, err := s.store.Session(r.Context(), session)
		if errors.Is(err, store.ErrNotFound) {
			return notFound()
		}
		if err != nil {
			s.storeError(w, r, "session "+session, err)
			return false
		}
		if !p.CanSeeNamespace(sess.Namespace) {
			return notFound()
		}
	}
	ok, err := s.store.BlobInSession(r.Context(), session, ref)
	if err != nil {
		s.storeError(w, r, "blob "+ref, err)
		return false
	}
	if !ok {
		return notFound()
	}
	return true
}
