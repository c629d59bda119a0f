package ingest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/natsbus"
	"github.com/chaperone-dev/chaperone/pkg/store"
)

// Reasons a message is dead-lettered. They are the values of the
// natsbus.ReasonHeader header and of the metric's reason label.
const (
	ReasonMalformed       = "malformed"
	ReasonTooLarge        = "too_large"
	ReasonVersion         = "unsupported_version"
	ReasonInvalid         = "invalid"
	ReasonSessionMismatch = "session_mismatch"
	ReasonBlobMismatch    = "blob_hash_mismatch"
	ReasonUnknownSubject  = "unknown_subject"
)

var allReasons = []string{
	ReasonMalformed, ReasonTooLarge, ReasonVersion, ReasonInvalid,
	ReasonSessionMismatch, ReasonBlobMismatch, ReasonUnknownSubject,
}

// rejection is why a message cannot be stored.
type rejection struct {
	reason string
	err    error
}

func (r *rejection) Error() string { return r.reason + ": " + r.err.Error() }

func reject(reason string, err error) *rejection { return &rejection{reason: reason, err: err} }

// parsed is one message turned into what the store takes: an event, a
// blob, or the events of a batch and those of its lines that cannot be
// stored.
type parsed struct {
	ev    *event.Event
	blob  *store.Blob
	batch []*event.Event
	bad   []badEvent
}

// badEvent is a line of a batch message that cannot be stored.
type badEvent struct {
	index int // of the line in the batch, from 0
	data  []byte
	rej   *rejection
}

// parse checks one message by its subject, headers and data. It never
// fails for a reason a retry could fix. A batch whose framing is wrong is
// rejected whole; a batch whose lines are events, some of them bad, is
// not: its bad lines are listed and the good events kept.
func parse(subject string, header map[string][]string, data []byte) (parsed, *rejection) {
	switch {
	case strings.HasPrefix(subject, natsbus.EventSubjectPrefix):
		session := strings.TrimPrefix(subject, natsbus.EventSubjectPrefix)
		if v, ok := header[natsbus.EventsHeader]; ok {
			count := ""
			if len(v) > 0 {
				count = v[0]
			}
			return parseBatch(session, count, data)
		}
		ev, rej := parseEvent(session, data)
		return parsed{ev: ev}, rej
	case strings.HasPrefix(subject, natsbus.BlobSubjectPrefix):
		var ref string
		if v := header[natsbus.BlobRefHeader]; len(v) > 0 {
			ref = v[0]
		}
		b, rej := parseBlob(ref, data)
		return parsed{blob: b}, rej
	default:
		return parsed{}, reject(ReasonUnknownSubject, fmt.Errorf("subject %q", subject))
	}
}

// parseBatch splits a batch message published for session subjSession
// into its events; count is its natsbus.EventsHeader. Every line gets the
// checks of a single event.
func parseBatch(subjSession, count string, data []byte) (parsed, *rejection) {
	lines, err := natsbus.SplitEvents(count, data)
	if err != nil {
		return parsed{}, reject(ReasonMalformed, err)
	}
	p := parsed{batch: make([]*event.Event, 0, len(lines))}
	for i, l := range lines {
		ev, rej := parseEvent(subjSession, l)
		if rej != nil {
			p.bad = append(p.bad, badEvent{index: i, data: l, rej: rej})
			continue
		}
		p.batch = append(p.batch, ev)
	}
	return p, nil
}

// parseEvent decodes an event published for session subjSession.
func parseEvent(subjSession string, data []byte) (*event.Event, *rejection) {
	ev, err := event.Decode(data)
	if err != nil {
		return nil, reject(decodeReason(err), err)
	}
	if ev.Session != subjSession {
		return nil, reject(ReasonSessionMismatch,
			fmt.Errorf("event %s of session %q published on the subject of session %q", ev.ID, ev.Session, subjSession))
	}
	// The chain link is the server's to set; never take a producer's.
	ev.Chain = nil
	return ev, nil
}

func decodeReason(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, event.ErrTooLarge):
		return ReasonTooLarge
	case errors.Is(err, event.ErrVersion):
		return ReasonVersion
	case errors.As(err, &syn), errors.As(err, &typ):
		return ReasonMalformed
	default:
		return ReasonInvalid
	}
}

// parseBlob checks that data hashes to ref ("sha256:<hex>").
func parseBlob(ref string, data []byte) (*store.Blob, *rejection) {
	hexSum, ok := strings.CutPrefix(ref, "sha256:")
	if !ok {
		return nil, reject(ReasonBlobMismatch, fmt.Errorf("blob ref %q is not sha256:<hex>", ref))
	}
	sum := sha256.Sum256(data)
	if hexSum != hex.EncodeToString(sum[:]) {
		return nil, reject(ReasonBlobMismatch,
			fmt.Errorf("blob ref %s does not match its %d bytes", ref, len(data)))
	}
	return &store.Blob{Ref: ref, Data: data}, nil
}
