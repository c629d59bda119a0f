package chain

import "fmt"

// Record is one stored event as a verifier sees it.
type Record struct {
	// Index is the event's position in its session, from 1.
	Index uint64
	// ID is the event id, for reporting.
	ID string
	// Prev and Hash are the stored link.
	Prev string
	Hash string
	// Canonical is the stored canonical bytes of the event.
	Canonical []byte
}

// Break says where and why a chain does not hold.
type Break struct {
	// Index is the chain index of the first bad event. For a chain that is
	// shorter than its session summary claims, it is the first missing index.
	Index uint64
	// ID is the first bad event's id; empty for a missing event.
	ID string
	// Reason says what is wrong, in a short lowercase phrase.
	Reason string
}

// Error makes a Break usable as an error.
func (b *Break) Error() string {
	if b.ID == "" {
		return fmt.Sprintf("chain broken at index %d: %s", b.Index, b.Reason)
	}
	return fmt.Sprintf("chain broken at index %d (event %s): %s", b.Index, b.ID, b.Reason)
}

// Verifier checks a session's chain one record at a time, in index order.
// It keeps only the last good link, so a chain of any length is checked in
// constant memory. The zero value is ready for a session's first event.
type Verifier struct {
	count  uint64
	head   string
	lastID string
	bad    *Break
}

// Add checks the next record and reports whether the chain still holds.
// After the first bad record, Add ignores the rest and returns false.
func (v *Verifier) Add(r Record) bool {
	if v.bad != nil {
		return false
	}
	want := v.count + 1
	switch {
	case r.Index != want:
		v.bad = &Break{Index: want, ID: r.ID, Reason: fmt.Sprintf("index %d where %d was expected", r.Index, want)}
		if r.Index > want {
			// An event is missing: name the gap, not the event after it.
			v.bad.ID = ""
			v.bad.Reason = fmt.Sprintf("missing event: next stored index is %d", r.Index)
		}
	case r.Prev != v.head:
		v.bad = &Break{Index: r.Index, ID: r.ID, Reason: fmt.Sprintf("prev %s does not match the previous event's hash %s", short(r.Prev), short(v.head))}
	case Link(r.Prev, r.Canonical) != r.Hash:
		v.bad = &Break{Index: r.Index, ID: r.ID, Reason: "hash does not match the stored event"}
	default:
		v.count = r.Index
		v.head = r.Hash
		v.lastID = r.ID
		return true
	}
	return false
}

// End checks that the chain ends where the session summary says it does:
// after count events with the given head hash. It reports whether the chain
// holds.
func (v *Verifier) End(count uint64, head string) bool {
	if v.bad != nil {
		return false
	}
	switch {
	case v.count < count:
		v.bad = &Break{Index: v.count + 1, Reason: fmt.Sprintf("missing event: chain ends at index %d but the session has %d events", v.count, count)}
	case v.count > count:
		v.bad = &Break{Index: count + 1, Reason: fmt.Sprintf("chain has %d events but the session records %d", v.count, count)}
	case v.head != head:
		v.bad = &Break{Index: v.count, ID: v.lastID, Reason: fmt.Sprintf("last hash %s does not match the session head %s", short(v.head), short(head))}
	default:
		return true
	}
	return false
}

// Events is how many events verified so far.
func (v *Verifier) Events() uint64 { return v.count }

// Head is the hash of the last verified event.
func (v *Verifier) Head() string { return v.head }

// Break returns the first bad link, or nil while the chain holds.
func (v *Verifier) Break() *Break { return v.bad }

func short(h string) string {
	if h == "" {
		return `""`
	}
	if len(h) > 16 {
		return h[:16] + "…"
	}
	return h
}
