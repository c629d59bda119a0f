// Package approvals holds operations for people to approve: the NATS
// protocol a sidecar uses to ask and to learn the answer, the server-side
// state kept in the JetStream KV bucket "chaperone-approvals" (so pending
// approvals survive a restart), the rules (approver groups, no
// self-approval, minimum approvals, deny on timeout), the events that record
// the request and the decision in the session's chain, and the Slack-style
// message and its signed interactivity callback.
package approvals
