// Package chain is the hash-chain rule every store backend uses to link a
// session's events, and the verifier that checks a stored chain.
//
// The events of a session are numbered 1, 2, 3… in store order. Event n
// carries Prev (the Hash of event n-1, empty for event 1) and
// Hash = Link(Prev, canonical), where canonical is event.Canonical of the
// event: its JSON without the chain field. Changing, removing, reordering or
// inserting a stored event breaks the chain at or after that event, and
// Verifier names the first event whose link does not hold.
//
// The rule depends on nothing but the canonical bytes, so any backend (SQLite,
// PostgreSQL) and any offline tool holding an export can check it.
package chain
