// Package natsbus is Chaperone's NATS wiring: subject and stream names
// shared by every producer and the server, stream setup, and the embedded
// JetStream server for one-machine installs.
package natsbus

// Streams and subjects. A session id is a single subject token (see
// event.ValidSession).
const (
	// EventsStream holds every event and blob until the server stored it.
	EventsStream = "CHAPERONE_EVENTS"
	// EventSubjectPrefix + session carries that session's events. A
	// message is one JSON event with the event id as Nats-Msg-Id, or a
	// batch of events (see EventsHeader).
	EventSubjectPrefix = "chaperone.events."
	// BlobSubjectPrefix + session carries bodies stored by content hash; the
	// message data is the raw bytes, header BlobRefHeader names the ref and
	// Nats-Msg-Id is the ref.
	BlobSubjectPrefix = "chaperone.blobs."
	// DeadLetterStream keeps messages the server could not accept, with the
	// reason in header ReasonHeader.
	DeadLetterStream  = "CHAPERONE_DEADLETTER"
	DeadLetterSubject = "chaperone.deadletter.events"
	// IngestConsumer is the server's durable consumer on EventsStream.
	IngestConsumer = "chaperone-ingest"

	BlobRefHeader = "Chaperone-Blob-Ref"
	ReasonHeader  = "Chaperone-Reason"
)

// EventSubject is the subject for a session's events.
func EventSubject(session string) string { return EventSubjectPrefix + session }

// BlobSubject is the subject for a session's blobs.
func BlobSubject(session string) string { return BlobSubjectPrefix + session }
