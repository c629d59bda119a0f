package api

import (
	"net/http/httptest"
	"testing"
)

// FuzzSessionQuery feeds arbitrary query strings to the list endpoint's
// parser: it must never panic, and every refusal must name a parameter.
func FuzzSessionQuery(f *testing.F) {
	for _, s := range []string{
		"", "user=alice", "since=1h&until=2026-01-01T00:00:00Z", "limit=1000", "limit=0",
		"since=7d", "since=99999999d", "verdict=deny", "cursor=abc", "a=%zz", "x=1&x=2", "since=-5m",
		"until=1e9h", "limit=%2B5",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		r := httptest.NewRequest("GET", "/api/v1/sessions", nil)
		r.URL.RawQuery = raw
		q, perr := parseSessionQuery(r, seedTime)
		if perr != nil {
			if perr.param == "" || perr.msg == "" {
				t.Fatalf("refusal without param or message: %+v", perr)
			}
			return
		}
		if q.Limit < 1 || q.Limit > 1000 {
			t.Fatalf("accepted limit %d", q.Limit)
		}
		if !q.Since.IsZero() && !q.Until.IsZero() && !q.Since.Before(q.Until) {
			t.Fatalf("accepted since %v not before until %v", q.Since, q.Until)
		}
	})
}
