// Package ingest moves events and blobs from JetStream into the store.
//
// An Ingester pulls from the durable consumer natsbus.IngestConsumer in
// batches, decodes and checks every message, writes the batch's blobs and
// events to the store, and acknowledges the messages only after the store
// committed them. A message on an event subject is one event or a batch of
// events (natsbus.EventsHeader); every event of a batch gets the checks of
// a single one. A message that can never be stored (malformed, too large,
// wrong version, invalid, a blob whose bytes do not match its ref, an event
// on another session's subject, a batch whose lines do not match its
// header) is copied to the dead-letter stream with its reason and
// terminated, so it never blocks the stream. A bad event inside a batch is
// dead-lettered alone, as a message of its own, and the batch's good
// events are stored. A store error
// acknowledges nothing: the batch is retried with back-off, and JetStream
// redelivers whatever a crash left unacknowledged. The store de-duplicates
// by event id, so redelivery never duplicates an event.
package ingest
