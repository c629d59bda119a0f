package natsbus

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// SubjectHeader carries, on a dead-lettered message, the subject it was
// first published on.
const SubjectHeader = "Chaperone-Subject"

// ErrorHeader carries, on a dead-lettered message, the detailed error.
const ErrorHeader = "Chaperone-Error"

// DuplicateWindow is how long JetStream remembers a Nats-Msg-Id. Producers
// that re-send from a spool after a longer outage are caught by the
// store's own de-duplication on event id.
const DuplicateWindow = 2 * time.Minute

// EventsStreamConfig is the configuration of EventsStream.
//
// Retention is work-queue: a message stays until the server's ingest
// consumer acknowledged it, which it does only after the store committed,
// and not a moment longer (the store is the durable record, not the
// stream). DiscardNew makes a full stream refuse publishes, so producers
// keep events in their spool instead of the stream dropping old ones.
func EventsStreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        EventsStream,
		Description: "Chaperone session events and blobs awaiting ingest",
		Subjects:    []string{EventSubjectPrefix + ">", BlobSubjectPrefix + ">"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardNew,
		Duplicates:  DuplicateWindow,
		MaxMsgSize:  MaxPayload,
		Replicas:    1,
	}
}

// DeadLetterStreamConfig is the configuration of DeadLetterStream: messages
// the server refused, kept for 30 days or 1 GiB for people to inspect.
func DeadLetterStreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        DeadLetterStream,
		Description: "Chaperone messages the server could not accept",
		Subjects:    []string{DeadLetterSubject},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		MaxAge:      30 * 24 * time.Hour,
		MaxBytes:    1 << 30,
		MaxMsgSize:  MaxPayload + 64<<10,
		Duplicates:  DuplicateWindow,
		Replicas:    1,
	}
}

// EnsureStreams creates EventsStream and DeadLetterStream, or updates them
// to the current configuration. It is safe to call on every start.
func EnsureStreams(ctx context.Context, js jetstream.JetStream) error {
	for _, cfg := range []jetstream.StreamConfig{EventsStreamConfig(), DeadLetterStreamConfig()} {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("ensure stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}
