// Package corpus generates test material for the masking engine: many
// valid-format secrets per rule, embedded in code, JSON, logs, prose,
// YAML and shell, and look-alike text that holds no secret (placeholders,
// UUIDs, commit ids, hashes, random base64). Generation is deterministic
// for a seed. The secrets are random; none is a real credential.
package corpus
