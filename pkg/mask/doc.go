// Package mask finds secrets in recorded traffic and replaces them with
// stable tokens before anything is stored.
//
// A Masker holds a rule set: built-in rules written from the vendors'
// published token formats (cloud keys, VCS and chat tokens, payment and LLM
// provider keys, private keys, JWTs, database URLs with passwords, …), a
// keyword-and-entropy gated rule for generic `key = value` assignments,
// optional PII rules, and custom rules. One pass of an Aho-Corasick
// automaton over the input finds which rules' keywords occur; only those
// rules run their RE2 regular expression, and only on windows around the
// keyword hits, so masking stays linear in the input.
//
// A secret becomes [MASKED:<rule-id>:<8 hex>], where the hex is the start of
// HMAC-SHA256(key, secret): the same secret gives the same token for as long
// as the key stays the same, so auditors can follow a credential through a
// session without seeing it. Masking is idempotent: masking masked text
// changes nothing.
//
// Structure-aware helpers mask HTTP headers, URLs, JSON (including base64
// values that decode to text and Kubernetes Secrets), form bodies,
// server-sent events and SQL text.
package mask
