// Package masking puts secret masking in front of the sidecar's recorder:
// a Recorder that masks every string of an event that can carry a secret
// (URLs, headers, bodies, stream data, SQL, LLM messages and tool calls,
// command lines, error texts) and every blob, records the rules that fired
// in event.Masked, and forwards to the real recorder. Nothing unmasked
// reaches the spool, NATS or the server.
package masking
