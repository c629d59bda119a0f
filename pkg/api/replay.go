package api

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

// Replay limits.
const (
	// MaxReplaySpeed is the fastest replay allowed.
	MaxReplaySpeed = 1000
	// MaxReplayGap caps the wait between two events at original speed; at
	// speed s the cap is MaxReplayGap/s. An agent idle for an hour does not
	// hold the auditor's screen for an hour.
	MaxReplayGap = 5 * time.Second
	// ReplayEndEvent is the SSE event name of the frame that closes a
	// complete replay. Its data is {"events": N}, the number of events sent.
	ReplayEndEvent = "end"
)

// replayDelay is how long to wait before sending next after prev at the
// given speed: the original gap divided by speed, capped, never negative.
func replayDelay(prev, next time.Time, speed float64) time.Duration {
	gap := next.Sub(prev)
	if gap <= 0 {
		return 0
	}
	if gap > MaxReplayGap {
		gap = MaxReplayGap
	}
	return time.Duration(float64(gap) / speed)
}

// parseSpeed reads the speed parameter (default 1).
func parseSpeed(v string) (float64, *paramError) {
	if v == "" {
		return 1, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || !(f > 0 && f <= MaxReplaySpeed) {
		return 0, badParam("speed", fmt.Sprintf("%q is not a number greater than 0 and at most %d", v, MaxReplaySpeed))
	}
	return f, nil
}

// replay sends a session's events as server-sent events with their original
// timing divided by speed. Each frame's id is the event's chain index, so a
// client that reconnects with Last-Event-ID resumes after it.
func (s *server) replay(w http.ResponseWriter, r *http.Request) {
	id, perr := sessionID(r)
	var q map[string][]string
	if perr == nil {
		q, perr = query(r, "speed")
	}
	var speed float64
	if perr == nil {
		speed, perr = parseSpeed(first(q, "speed"))
	}
	var after uint64
	if perr == nil {
		after, perr = parseIndex("Last-Event-ID", r.Header.Get("Last-Event-ID"))
	}
	if perr != nil {
		writeParamError(w, perr)
		return
	}
	if _, err := s.store.Session(r.Context(), id); err != nil {
		s.storeError(w, r, "session "+id, err)
		return
	}

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if err := rc.Flush(); err != nil {
		s.abortStream(r, id, err)
	}

	var (
		prev time.Time
		sent int
		buf  bytes.Buffer
	)
	err := s.eachPage(r.Context(), id, after, func(batch []*event.Event) error {
		for _, e := range batch {
			if sent > 0 {
				if err := s.sleep(r.Context(), replayDelay(prev, e.Time, speed)); err != nil {
					return err
				}
			}
			data, err := event.Encode(e)
			if err != nil {
				return err
			}
			buf.Reset()
			writeFrame(&buf, string(e.Kind), strconv.FormatUint(e.Chain.Index, 10), data)
			if _, err := w.Write(buf.Bytes()); err != nil {
				return err
			}
			if err := rc.Flush(); err != nil {
				return err
			}
			prev = e.Time
			sent++
		}
		return nil
	})
	if err != nil {
		s.abortStream(r, id, err)
	}
	buf.Reset()
	writeFrame(&buf, ReplayEndEvent, "", fmt.Appendf(nil, `{"events":%d}`, sent))
	_, _ = w.Write(buf.Bytes())
	_ = rc.Flush()
}

// writeFrame writes one SSE frame. data must not contain newlines; encoded
// JSON never does.
func writeFrame(buf *bytes.Buffer, name, id string, data []byte) {
	buf.WriteString("event: ")
	buf.WriteString(name)
	buf.WriteByte('\n')
	if id != "" {
		buf.WriteString("id: ")
		buf.WriteString(id)
		buf.WriteByte('\n')
	}
	buf.WriteString("data: ")
	buf.Write(data)
	buf.WriteString("\n\n")
}
