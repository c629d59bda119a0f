// Package store is the server's durable record of sessions, events and
// blobs, and the contract every storage backend implements.
//
// SQLite (package store/sqlite) is the one-machine default; a PostgreSQL
// backend implements the same interface. Package store/storetest is the
// conformance suite both run.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

// ErrNotFound is returned for an unknown session or blob.
var ErrNotFound = errors.New("not found")

// Store keeps sessions, their hash-chained events, and content-addressed
// blobs. Implementations are safe for concurrent use.
type Store interface {
	// Append stores a batch of events in one transaction. It is idempotent on
	// event id: an event already stored is skipped and counted in
	// AppendResult.Duplicates. Each new event gets the next link of its
	// session's hash chain (event.Chain, set on the stored copy and on the
	// passed event). When Append returns nil, the batch is durable.
	Append(ctx context.Context, events []*event.Event) (AppendResult, error)
	// PutBlobs stores blobs by content hash; a blob already present is kept.
	PutBlobs(ctx context.Context, blobs []Blob) error
	// Blob returns a blob's bytes, or ErrNotFound.
	Blob(ctx context.Context, ref string) ([]byte, error)
	// BlobInSession reports whether an event of the session refers to the
	// blob, so that a reader limited to some sessions reads only their
	// bodies. It is false, not an error, for an unknown session or ref.
	BlobInSession(ctx context.Context, session, ref string) (bool, error)

	// Sessions lists sessions matching q, newest first, one page at a time.
	Sessions(ctx context.Context, q SessionQuery) (SessionPage, error)
	// Session returns one session's summary, or ErrNotFound.
	Session(ctx context.Context, id string) (Session, error)
	// Events calls fn for the session's events in chain order, starting
	// after chain index `after` (0 for all). It stops at fn's first error.
	// It returns ErrNotFound for an unknown session.
	Events(ctx context.Context, session string, after uint64, fn func(*event.Event) error) error
	// Verify recomputes the session's hash chain from the stored bytes.
	Verify(ctx context.Context, session string) (VerifyResult, error)

	// Ping reports whether the store can serve requests.
	Ping(ctx context.Context) error
	Close() error
}

// AppendResult counts what Append did.
type AppendResult struct {
	Stored     int
	Duplicates int
}

// Blob is a body stored once by content hash.
type Blob struct {
	// Ref is "sha256:<hex of Data>".
	Ref  string
	Data []byte
}

// Session summarises one session.
type Session struct {
	ID        string `json:"id"`
	User      string `json:"user,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Pod       string `json:"pod,omitempty"`
	// ServiceAccount of the pod, if known.
	ServiceAccount string `json:"service_account,omitempty"`
	// Origin is "pod" or "run".
	Origin    string    `json:"origin,omitempty"`
	Started   time.Time `json:"started"`
	LastEvent time.Time `json:"last_event"`
	Ended     bool      `json:"ended"`
	Events    uint64    `json:"events"`
	// Resources are what the session touched: destination hosts/addresses
	// and Kubernetes resources.
	Resources []string `json:"resources,omitempty"`
	// Verdicts are the distinct policy verdicts seen in the session.
	Verdicts []string `json:"verdicts,omitempty"`
	// Head is the hash of the session's last event.
	Head string `json:"head,omitempty"`
}

// SessionQuery filters and pages Sessions. Zero values do not filter.
type SessionQuery struct {
	User      string
	Namespace string
	Pod       string
	// Since and Until bound the session's start time (inclusive, exclusive).
	Since    time.Time
	Until    time.Time
	Resource string
	Verdict  string
	// Limit is the page size; the store caps it at MaxLimit.
	Limit int
	// Cursor continues a previous page (SessionPage.Next).
	Cursor string
}

// Default and maximum page sizes for Sessions.
const (
	DefaultLimit = 50
	MaxLimit     = 1000
)

// SessionPage is one page of sessions.
type SessionPage struct {
	Sessions []Session `json:"sessions"`
	// Next is the cursor of the next page, empty on the last page.
	Next string `json:"next,omitempty"`
}

// VerifyResult is the outcome of a chain check.
type VerifyResult struct {
	Session string `json:"session"`
	OK      bool   `json:"ok"`
	Events  uint64 `json:"events"`
	Head    string `json:"head,omitempty"`
	// FirstBad names the first event whose link does not hold.
	FirstBad *BadLink `json:"first_bad,omitempty"`
}

// BadLink says where and why a chain breaks.
type BadLink struct {
	Index   uint64 `json:"index"`
	EventID string `json:"event_id"`
	Reason  string `json:"reason"`
}
