// Package sse parses server-sent event streams (the text/event-stream
// format of the WHATWG HTML standard) incrementally, as the bytes of a
// response arrive, so a recorder can decode streaming LLM and MCP responses
// without buffering them whole.
package sse
