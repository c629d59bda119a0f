package api

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/store"
)

// maxParamLen bounds any single query value.
const maxParamLen = 1024

// Verdicts a session can be filtered by (see event.Event.Verdict).
var verdicts = map[string]bool{"allow": true, "deny": true, "held": true, "approved": true, "denied": true}

// query checks a request's query string against the parameters an endpoint
// accepts: unknown names, repeated names and oversized values are refused.
func query(r *http.Request, allowed ...string) (url.Values, *paramError) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, badParam("query", "malformed query string")
	}
	for name, vs := range q {
		if name == "" {
			return nil, badParam("query", "parameter with an empty name")
		}
		known := false
		for _, a := range allowed {
			if name == a {
				known = true
				break
			}
		}
		if !known {
			if len(allowed) == 0 {
				return nil, badParam(name, "unknown parameter (this endpoint takes none)")
			}
			return nil, badParam(name, "unknown parameter (accepted: "+strings.Join(allowed, ", ")+")")
		}
		if len(vs) > 1 {
			return nil, badParam(name, "given more than once")
		}
		if len(vs[0]) > maxParamLen {
			return nil, badParam(name, fmt.Sprintf("longer than %d bytes", maxParamLen))
		}
	}
	return q, nil
}

// sessionQueryParams are the parameters of GET /api/v1/sessions.
var sessionQueryParams = []string{"user", "namespace", "pod", "since", "until", "resource", "verdict", "limit", "cursor"}

// parseSessionQuery turns the list endpoint's query into a store query.
func parseSessionQuery(r *http.Request, now time.Time) (store.SessionQuery, *paramError) {
	q, perr := query(r, sessionQueryParams...)
	if perr != nil {
		return store.SessionQuery{}, perr
	}
	sq := store.SessionQuery{
		User:      q.Get("user"),
		Namespace: q.Get("namespace"),
		Pod:       q.Get("pod"),
		Resource:  q.Get("resource"),
		Verdict:   q.Get("verdict"),
		Cursor:    q.Get("cursor"),
		Limit:     store.DefaultLimit,
	}
	if sq.Verdict != "" && !verdicts[sq.Verdict] {
		return sq, badParam("verdict", fmt.Sprintf("%q is not one of allow, deny, held, approved, denied", sq.Verdict))
	}
	var err error
	if v := q.Get("since"); v != "" {
		if sq.Since, err = parseTime(v, now); err != nil {
			return sq, badParam("since", err.Error())
		}
	}
	if v := q.Get("until"); v != "" {
		if sq.Until, err = parseTime(v, now); err != nil {
			return sq, badParam("until", err.Error())
		}
	}
	if !sq.Since.IsZero() && !sq.Until.IsZero() && !sq.Since.Before(sq.Until) {
		return sq, badParam("until", "must be after since")
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > store.MaxLimit {
			return sq, badParam("limit", fmt.Sprintf("%q is not a whole number from 1 to %d", v, store.MaxLimit))
		}
		sq.Limit = n
	}
	return sq, nil
}

// parseTime reads an RFC 3339 time, or a duration meaning that long before
// now ("90m", "1h30m", and "7d" for whole days).
func parseTime(v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	d, err := parseAgo(v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a duration like 1h or 7d", v)
	}
	return now.Add(-d), nil
}

func parseAgo(v string) (time.Duration, error) {
	var d time.Duration
	if days, ok := strings.CutSuffix(v, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 16)
		if err != nil {
			return 0, err
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			return 0, err
		}
	}
	if d < 0 {
		return 0, fmt.Errorf("negative duration")
	}
	return d, nil
}

// sessionID reads and checks the {id} path parameter.
func sessionID(r *http.Request) (string, *paramError) {
	id := r.PathValue("id")
	if err := event.ValidSession(id); err != nil {
		return "", badParam("id", err.Error())
	}
	return id, nil
}

// parseIndex reads a chain index (a non-negative integer).
func parseIndex(name, v string) (uint64, *paramError) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, badParam(name, fmt.Sprintf("%q is not a chain index (a whole number, 0 or more)", v))
	}
	return n, nil
}
