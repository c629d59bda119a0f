// Package llm decodes the traffic of LLM APIs and MCP servers into session
// events: the prompt an agent sent (provider, model, system prompt,
// messages, tools offered) and the completion that came back (text
// reassembled from the stream, tool calls, fenced code blocks, finish
// reason, token usage).
//
// It knows the OpenAI chat completions and Responses APIs (and the
// OpenAI-compatible GitHub Copilot endpoints), Anthropic messages, Google
// Gemini generateContent / streamGenerateContent, and MCP's JSON-RPC over
// streamable HTTP. Decoders are fed as bytes flow through the proxy, so a
// streaming response is never buffered whole; they are pure and do no I/O.
package llm
