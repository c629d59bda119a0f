package render

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

// Conversation renders a session as the agent's conversation: each
// prompt (the messages new since the model last answered), the
// completion (text, code blocks, tool calls), then what the agent did
// before it asked again — HTTP and Kubernetes requests, MCP tool calls,
// SQL, processes, policy decisions — in the order they happened. The
// HTTP exchanges that carried the prompts and completions are left out,
// and so are connection and stream-data events. Feed it events in order
// with Add and print the lines it returns; Flush returns what it held
// back at the end. A Conversation is not safe for concurrent use.
type Conversation struct {
	turn int
	// pending is an http.request held until the next event says whether
	// it carried a prompt.
	pending *event.Event
	// llm marks the exchanges (conn/stream) that carried LLM or MCP
	// traffic; shown marks those whose request was shown, for their
	// response.
	llm, shown map[string]bool
}

// maxMarks bounds the exchange marks a Conversation keeps.
const maxMarks = 4096

// NewConversation returns an empty Conversation.
func NewConversation() *Conversation {
	return &Conversation{llm: map[string]bool{}, shown: map[string]bool{}}
}

func exchangeKey(e *event.Event, stream uint64) string {
	return e.Conn + "/" + strconv.FormatUint(stream, 10)
}

func (c *Conversation) mark(m map[string]bool, k string) {
	if len(m) >= maxMarks {
		clear(m)
	}
	m[k] = true
}

// Add renders e and returns the lines to print, indented.
func (c *Conversation) Add(e *event.Event) []string {
	var out []string
	if c.pending != nil {
		p := c.pending
		c.pending = nil
		k := exchangeKey(p, p.HTTPRequest.Stream)
		if e.LLMPrompt != nil && exchangeKey(e, e.LLMPrompt.Stream) == k {
			c.mark(c.llm, k)
		} else {
			out = append(out, c.action(p)...)
		}
	}
	return append(out, c.add(e)...)
}

// Flush returns the lines of an event held back.
func (c *Conversation) Flush() []string {
	if c.pending == nil {
		return nil
	}
	p := c.pending
	c.pending = nil
	return c.action(p)
}

func (c *Conversation) add(e *event.Event) []string {
	switch {
	case e.HTTPRequest != nil:
		c.pending = e
		return nil
	case e.LLMPrompt != nil:
		return c.prompt(e.LLMPrompt)
	case e.LLMCompletion != nil:
		return completion(e.LLMCompletion)
	case e.MCPToolCall != nil || e.MCPToolList != nil:
		return c.action(e)
	case e.HTTPResponse != nil:
		k := exchangeKey(e, e.HTTPResponse.Stream)
		if c.llm[k] || !c.shown[k] || e.HTTPResponse.Streamed == event.StreamedHeaders {
			return nil
		}
		delete(c.shown, k)
		return []string{"      " + httpResponse(e.HTTPResponse)}
	case e.ConnOpen != nil, e.ConnClose != nil, e.StreamData != nil, e.ProcessExit != nil:
		return nil
	case e.SessionStart != nil, e.SessionEnd != nil:
		return []string{Line(e)}
	}
	return c.action(e)
}

// action renders something the agent did, under the current turn.
func (c *Conversation) action(e *event.Event) []string {
	prefix := "    → "
	if c.turn == 0 {
		prefix = "  "
	}
	switch {
	case e.HTTPRequest != nil:
		c.mark(c.shown, exchangeKey(e, e.HTTPRequest.Stream))
	case e.MCPToolCall != nil:
		return mcpCall(prefix, e.MCPToolCall)
	case e.MCPToolList != nil:
		return []string{prefix + mcpList(e.MCPToolList)}
	}
	return []string{prefix + Line(e)}
}

func (c *Conversation) prompt(p *event.LLMPrompt) []string {
	c.turn++
	head := fmt.Sprintf("── turn %d: %s", c.turn, Clean(p.Provider, 24))
	if p.Model != "" {
		head += " " + Clean(p.Model, 40)
	}
	head += fmt.Sprintf(" (%d messages", len(p.Messages)+p.OmittedMessages)
	if len(p.Tools) > 0 {
		head += ", tools: " + Clean(strings.Join(p.Tools, ", "), MaxText)
	}
	head += ")"
	out := []string{head}
	// The messages after the last assistant message are what is new.
	from := 0
	for i := len(p.Messages) - 1; i >= 0; i-- {
		if p.Messages[i].Role == "assistant" || p.Messages[i].Role == "model" {
			from = i + 1
			break
		}
	}
	if from == 0 && p.System != "" {
		out = append(out, "  system: "+Clean(p.System, 2*MaxText))
	}
	for _, m := range p.Messages[from:] {
		out = append(out, "  "+Clean(m.Role, 16)+": "+Clean(m.Content, 2*MaxText))
	}
	return out
}

func completion(p *event.LLMCompletion) []string {
	head := "  ← " + cmpOr(Clean(p.Model, 40), "completion")
	var meta []string
	if p.Latency != 0 {
		meta = append(meta, Duration(p.Latency))
	}
	if p.InputTokens != 0 || p.OutputTokens != 0 {
		meta = append(meta, fmt.Sprintf("%d→%d tokens", p.InputTokens, p.OutputTokens))
	}
	if p.FinishReason != "" {
		meta = append(meta, Clean(p.FinishReason, 24))
	}
	if len(meta) > 0 {
		head += " (" + strings.Join(meta, ", ") + ")"
	}
	out := []string{head}
	if p.Text != "" {
		for _, l := range strings.Split(strings.TrimRight(p.Text, "\n"), "\n") {
			out = append(out, "    "+Clean(l, 2*MaxText))
		}
	}
	for _, tc := range p.ToolCalls {
		out = append(out, "    tool call "+Clean(tc.Name, 64)+" "+Clean(tc.Arguments, MaxText))
	}
	if n := len(p.CodeBlocks); n > 0 {
		out = append(out, fmt.Sprintf("    (%d code block%s)", n, map[bool]string{true: "s"}[n > 1]))
	}
	return out
}

func mcpCall(prefix string, p *event.MCPToolCall) []string {
	s := prefix + "mcp " + Clean(p.Name, 64) + " " + Clean(p.Arguments, MaxText)
	switch {
	case p.Error != "":
		return []string{s, "      → error: " + Clean(p.Error, MaxText)}
	case p.IsError:
		return []string{s, "      → tool error: " + Clean(p.Result, MaxText)}
	}
	return []string{s, "      → " + Clean(p.Result, MaxText)}
}

func mcpList(p *event.MCPToolList) string {
	names := make([]string, 0, len(p.Tools))
	for _, t := range p.Tools {
		names = append(names, t.Name)
	}
	s := "mcp tools of " + Clean(p.Server, 64) + ": " + Clean(strings.Join(names, ", "), MaxText)
	if p.Error != "" {
		s += " (error: " + Clean(p.Error, MaxText) + ")"
	}
	return s
}
