package llm

import (
	"unicode/utf8"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

// FitPrompt bounds the text a prompt carries to about max bytes, so its
// event stays under event.MaxSize (JSON escaping can add to the size, so
// leave room: max = event.MaxSize/2 is safe for most text). It keeps the
// system prompt (cut to a quarter of max) and the newest messages, counts
// the older ones left out in OmittedMessages, and cuts the newest message
// when it alone is too large. The whole request stays recorded in the HTTP
// request's body.
func FitPrompt(p *event.LLMPrompt, max int) {
	if promptSize(p) <= max {
		return
	}
	if len(p.System) > max/4 {
		p.System = cut(p.System, max/4)
		p.Truncated = true
	}
	budget := max - len(p.System)
	for _, t := range p.Tools {
		budget -= len(t)
	}
	keep := len(p.Messages)
	for keep > 0 {
		m := &p.Messages[keep-1]
		n := len(m.Role) + len(m.Content)
		if n > budget {
			if keep == len(p.Messages) && budget > len(m.Role) {
				m.Content = cut(m.Content, budget-len(m.Role))
				p.Truncated = true
				keep--
			}
			break
		}
		budget -= n
		keep--
	}
	p.OmittedMessages += keep
	p.Messages = p.Messages[keep:]
}

func promptSize(p *event.LLMPrompt) int {
	n := len(p.System)
	for _, m := range p.Messages {
		n += len(m.Role) + len(m.Content)
	}
	for _, t := range p.Tools {
		n += len(t)
	}
	return n
}

// FitCompletion bounds the text a completion carries to about max bytes
// (see FitPrompt for choosing max): the text and its code blocks share
// half, the tool calls' arguments and results the other half.
func FitCompletion(c *event.LLMCompletion, max int) {
	n := len(c.Text)
	for _, b := range c.CodeBlocks {
		n += len(b)
	}
	for _, tc := range c.ToolCalls {
		n += len(tc.Name) + len(tc.Arguments) + len(tc.Result)
	}
	if n <= max {
		return
	}
	if len(c.Text) > max/4 {
		c.Text = cut(c.Text, max/4)
		c.CodeBlocks = CodeBlocks(c.Text)
		c.Truncated = true
	}
	if len(c.ToolCalls) == 0 {
		return
	}
	each := max / 2 / len(c.ToolCalls)
	for i := range c.ToolCalls {
		tc := &c.ToolCalls[i]
		if len(tc.Arguments)+len(tc.Result) <= each {
			continue
		}
		c.Truncated = true
		tc.Arguments = cut(tc.Arguments, each/2)
		tc.Result = cut(tc.Result, each/2)
	}
}

// cut returns at most n bytes of s, not splitting a UTF-8 sequence.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	if n <= 0 {
		return ""
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
