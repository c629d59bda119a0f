package api

import (
	"net/http"
	"strings"

	"github.com/chaperone-dev/chaperone/pkg/asciicast"
	"github.com/chaperone-dev/chaperone/pkg/event"
)

// castSuffix ends the last segment of the stream route: the mux matches
// whole segments only, so {stream} holds "NAME.cast" and the handler
// strips the suffix.
const castSuffix = ".cast"

// maxStreamName bounds a stream name taken from the path.
const maxStreamName = 256

// streamCast serves one exec/attach stream of a session as asciicast v2.
// It reads the session twice, page by page: once for the header (first
// time and terminal size), once to write the events, so memory stays
// bounded however long the session is.
func (s *server) streamCast(w http.ResponseWriter, r *http.Request) {
	id, perr := sessionID(r)
	if perr == nil {
		_, perr = query(r)
	}
	if perr != nil {
		writeParamError(w, perr)
		return
	}
	stream, ok := strings.CutSuffix(r.PathValue("stream"), castSuffix)
	if !ok || stream == "" || len(stream) > maxStreamName {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path+" (want .../streams/NAME.cast)", "")
		return
	}
	ctx := r.Context()
	if _, err := s.store.Session(ctx, id); err != nil {
		s.storeError(w, r, "session "+id, err)
		return
	}
	info := &asciicast.Info{Stream: stream}
	err := s.eachPage(ctx, id, 0, func(batch []*event.Event) error {
		for _, e := range batch {
			info.Observe(e)
		}
		return nil
	})
	if err != nil {
		s.storeError(w, r, "session "+id, err)
		return
	}
	if !info.Found {
		writeError(w, http.StatusNotFound, "stream "+stream+" not found in session "+id, "stream")
		return
	}
	h := w.Header()
	h.Set("Content-Type", asciicast.ContentType)
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	blob := func(ref string) ([]byte, error) { return s.store.Blob(ctx, ref) }
	enc, err := asciicast.NewEncoder(w, info, id+"/"+stream, blob)
	if err != nil {
		s.abortStream(r, id, err)
		return
	}
	rc := http.NewResponseController(w)
	err = s.eachPage(ctx, id, 0, func(batch []*event.Event) error {
		for _, e := range batch {
			if err := enc.Add(e); err != nil {
				return err
			}
		}
		return rc.Flush()
	})
	if err == nil {
		err = enc.Close()
	}
	if err != nil {
		s.abortStream(r, id, err)
	}
}
