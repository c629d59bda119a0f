package api

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/store"
	"github.com/chaperone-dev/chaperone/pkg/store/sqlite"
)

type errString string

func (e errString) Error() string { return string(e) }

func durationMS(i int) time.Duration { return time.Duration(i) * time.Millisecond }

func newHTTPTest(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

// openSQLite opens the real SQLite store in a temp dir.
func openSQLite(t *testing.T) store.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "chaperone.db"))
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
