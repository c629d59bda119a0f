package store

import (
	"errors"
	"math"
	"testing"
	"time"
)

func TestCursorRoundTrip(t *testing.T) {
	tests := []Cursor{
		{Started: time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC), ID: "pod-uid_1"},
		{Started: time.Unix(0, 0).UTC(), ID: "a"},
		{Started: time.Unix(0, -5).UTC(), ID: "Z"},
	}
	for _, c := range tests {
		got, err := ParseCursor(c.String())
		if err != nil {
			t.Fatalf("ParseCursor(%v): %v", c, err)
		}
		if !got.Started.Equal(c.Started) || got.ID != c.ID {
			t.Fatalf("round trip %v -> %v", c, got)
		}
	}
}

func TestParseCursorBad(t *testing.T) {
	for _, s := range []string{
		"", "!!!", "MTox", // "1:1"
		Cursor{ID: "has space"}.String(),
		"MjoxOmE",    // "2:1:a"
		"MTorMTphYg", // "1:+1:ab" (non-canonical number)
		"MTp4OmE",    // "1:x:a"
	} {
		if _, err := ParseCursor(s); !errors.Is(err, ErrBadCursor) {
			t.Errorf("ParseCursor(%q) = %v, want ErrBadCursor", s, err)
		}
	}
}

func TestUnixNanoClamps(t *testing.T) {
	if got := UnixNano(time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)); got != math.MaxInt64 {
		t.Errorf("year 3000 = %d", got)
	}
	if got := UnixNano(time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)); got != math.MinInt64 {
		t.Errorf("year 1000 = %d", got)
	}
	now := time.Now()
	if got := UnixNano(now); got != now.UnixNano() {
		t.Errorf("now = %d, want %d", got, now.UnixNano())
	}
}

func TestPageSize(t *testing.T) {
	for _, tt := range []struct{ in, want int }{{0, DefaultLimit}, {-3, DefaultLimit}, {7, 7}, {MaxLimit + 1, MaxLimit}} {
		if got := (SessionQuery{Limit: tt.in}).PageSize(); got != tt.want {
			t.Errorf("PageSize(%d) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestCheckBlob(t *testing.T) {
	data := []byte("hello")
	if err := CheckBlob(Blob{Ref: BlobRef(data), Data: data}); err != nil {
		t.Fatal(err)
	}
	if err := CheckBlob(Blob{Ref: BlobRef([]byte("other")), Data: data}); !errors.Is(err, ErrBlobMismatch) {
		t.Fatalf("mismatch: %v", err)
	}
}

// FuzzParseCursor checks that any text either parses into a cursor that
// encodes back to the same text, or fails with ErrBadCursor.
func FuzzParseCursor(f *testing.F) {
	f.Add(Cursor{Started: time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC), ID: "abc"}.String())
	f.Add("")
	f.Add("MTox")
	f.Add("MToxOmE")
	f.Add("not a cursor")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCursor(s)
		if err != nil {
			if !errors.Is(err, ErrBadCursor) {
				t.Fatalf("error %v does not wrap ErrBadCursor", err)
			}
			return
		}
		if again := c.String(); again != s {
			t.Fatalf("ParseCursor(%q) = %v, which encodes as %q", s, c, again)
		}
	})
}
