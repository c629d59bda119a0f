package ingest

import (
	"strings"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/natsbus"
)

func TestParse(t *testing.T) {
	good := newEvent("s1", 1, 5)
	goodData := encode(t, good)
	chained := newEvent("s1", 2, 5)
	chained.Chain = &event.Chain{Index: 7, Hash: "forged"}
	cases := []struct {
		name    string
		subject string
		ref     string
		data    []byte
		reason  string
	}{
		{"event", natsbus.EventSubject("s1"), "", goodData, ""},
		{"forged chain is dropped", natsbus.EventSubject("s1"), "", encode(t, chained), ""},
		{"blob", natsbus.BlobSubject("s1"), refOf([]byte("abc")), []byte("abc"), ""},
		{"empty blob", natsbus.BlobSubject("s1"), refOf(nil), nil, ""},
		{"blob without ref", natsbus.BlobSubject("s1"), "", []byte("abc"), ReasonBlobMismatch},
		{"blob md5 ref", natsbus.BlobSubject("s1"), "md5:900150983cd24fb0d6963f7d28e17f72", []byte("abc"), ReasonBlobMismatch},
		{"blob upper-case hex", natsbus.BlobSubject("s1"), strings.ToUpper(refOf([]byte("abc"))), []byte("abc"), ReasonBlobMismatch},
		{"other session", natsbus.EventSubject("s2"), "", goodData, ReasonSessionMismatch},
		{"not json", natsbus.EventSubject("s1"), "", []byte("hello"), ReasonMalformed},
		{"wrong type", natsbus.EventSubject("s1"), "", []byte(`{"v":1,"id":5}`), ReasonMalformed},
		{"no version", natsbus.EventSubject("s1"), "", []byte(`{"id":"x"}`), ReasonVersion},
		{"version 0", natsbus.EventSubject("s1"), "", []byte(`{"v":0}`), ReasonVersion},
		{"bad id", natsbus.EventSubject("s1"), "", []byte(`{"v":1,"id":"short"}`), ReasonInvalid},
		{"too large", natsbus.EventSubject("s1"), "", make([]byte, event.MaxSize+1), ReasonTooLarge},
		{"unknown subject", "chaperone.other.s1", "", goodData, ReasonUnknownSubject},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := map[string][]string{}
			if c.ref != "" {
				h[natsbus.BlobRefHeader] = []string{c.ref}
			}
			p, rej := parse(c.subject, h, c.data)
			if c.reason != "" {
				if rej == nil || rej.reason != c.reason {
					t.Fatalf("rejection %v, want reason %s", rej, c.reason)
				}
				return
			}
			if rej != nil {
				t.Fatalf("rejected: %v", rej)
			}
			if (p.ev == nil) == (p.blob == nil) {
				t.Fatalf("want exactly one of event and blob: %+v", p)
			}
			if p.ev != nil && p.ev.Chain != nil {
				t.Fatalf("producer chain kept: %+v", p.ev.Chain)
			}
		})
	}
}

// FuzzParse feeds arbitrary subjects, refs and bytes to the message check:
// it must never panic, and whatever it accepts must be storable.
func FuzzParse(f *testing.F) {
	e := event.New("fz", event.KindSessionStart, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	e.SessionStart = &event.SessionStart{Origin: "run"}
	b, _ := event.Encode(e)
	f.Add("chaperone.events.fz", "", b)
	f.Add("chaperone.events.other", "", b)
	f.Add("chaperone.blobs.fz", refOf([]byte("abc")), []byte("abc"))
	f.Add("chaperone.blobs.fz", "sha256:", []byte{})
	f.Add("chaperone.events.fz", "", []byte(`{"v":2}`))
	f.Add("chaperone.events.fz", "", []byte(`{"v":1,"id":"01ARZ3NDEKTSV4RRFFQ69G5FAV","session":"fz","time":"2020-01-01T00:00:00Z","kind":"conn.open","conn_open":{}}`))
	f.Add("x", "", []byte("{"))
	f.Fuzz(func(t *testing.T, subject, ref string, data []byte) {
		p, rej := parse(subject, map[string][]string{natsbus.BlobRefHeader: {ref}}, data)
		if rej != nil {
			if rej.reason == "" || rej.Error() == "" {
				t.Fatalf("rejection without reason: %#v", rej)
			}
			return
		}
		switch {
		case p.ev != nil && p.blob == nil:
			if err := p.ev.Validate(); err != nil {
				t.Fatalf("accepted invalid event: %v", err)
			}
			if natsbus.EventSubject(p.ev.Session) != subject {
				t.Fatalf("accepted event of %q on %q", p.ev.Session, subject)
			}
			if p.ev.Chain != nil {
				t.Fatal("accepted a producer's chain link")
			}
		case p.blob != nil && p.ev == nil:
			if p.blob.Ref != refOf(data) {
				t.Fatalf("accepted blob %s for other bytes", p.blob.Ref)
			}
		default:
			t.Fatalf("accepted nothing or both: %+v", p)
		}
	})
}
