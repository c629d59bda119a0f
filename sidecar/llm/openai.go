package llm

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/sidecar/sse"
)

// chat decodes OpenAI-compatible chat completions (POST …/chat/completions),
// as served by OpenAI, Azure OpenAI, GitHub Copilot and many self-hosted
// servers. Only the first choice (index 0) is recorded.
type chat struct {
	response
	c completion
}

func newChat(provider string) *chat {
	d := &chat{c: completion{provider: provider}}
	d.onEvent = d.ResponseEvent
	return d
}

// Provider implements Decoder.
func (d *chat) Provider() string { return d.c.provider }

type chatRequest struct {
	Model    string `json:"model"`
	Messages []struct {
		Role       string          `json:"role"`
		Content    json.RawMessage `json:"content"`
		Name       string          `json:"name"`
		ToolCallID string          `json:"tool_call_id"`
		ToolCalls  []chatToolCall  `json:"tool_calls"`
	} `json:"messages"`
	Tools []struct {
		Type     string `json:"type"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	} `json:"tools"`
}

type chatToolCall struct {
	Index    *int   `json:"index"`
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// Request implements Decoder.
func (d *chat) Request(body []byte) (*event.LLMPrompt, error) {
	var req chatRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("%w: chat completions request: %w", ErrMalformed, err)
	}
	p := &event.LLMPrompt{Provider: d.c.provider, Model: req.Model}
	var system []string
	for _, m := range req.Messages {
		text := openAIContent(m.Content)
		for _, tc := range m.ToolCalls {
			text = joinNonEmpty("\n", text, toolUseText(tc.Function.Name, tc.Function.Arguments))
		}
		if m.Role == "system" || m.Role == "developer" {
			system = append(system, text)
			continue
		}
		p.Messages = append(p.Messages, event.LLMMessage{Role: m.Role, Content: text})
	}
	p.System = joinNonEmpty("\n\n", system...)
	for _, t := range req.Tools {
		name := t.Function.Name
		if name == "" {
			name = t.Type
		}
		p.Tools = append(p.Tools, name)
	}
	return p, nil
}

// openAIContent flattens a chat message's content: a string, null, or an
// array of typed parts of which text and refusals are kept and others
// (images, audio, files) are named.
func openAIContent(raw json.RawMessage) string {
	if len(raw) == 0 || raw[0] != '[' {
		return jsonText(raw)
	}
	var parts []struct {
		Type    string `json:"type"`
		Text    string `json:"text"`
		Refusal string `json:"refusal"`
	}
	if json.Unmarshal(raw, &parts) != nil {
		return jsonText(raw)
	}
	out := make([]string, 0, len(parts))
	for _, p := range parts {
		switch {
		case p.Text != "":
			out = append(out, p.Text)
		case p.Refusal != "":
			out = append(out, p.Refusal)
		case p.Type != "":
			out = append(out, "["+p.Type+"]")
		}
	}
	return strings.Join(out, "\n")
}

type chatUsage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
}

type chatResponse struct {
	Model   string `json:"model"`
	Choices []struct {
		Index        int     `json:"index"`
		FinishReason *string `json:"finish_reason"`
		Message      *struct {
			Content   json.RawMessage `json:"content"`
			Refusal   string          `json:"refusal"`
			ToolCalls []chatToolCall  `json:"tool_calls"`
		} `json:"message"`
		Delta *struct {
			Content   *string        `json:"content"`
			Refusal   *string        `json:"refusal"`
			ToolCalls []chatToolCall `json:"tool_calls"`
		} `json:"delta"`
	} `json:"choices"`
	Usage *chatUsage `json:"usage"`
}

// ResponseEvent decodes one `data: {chunk}` event; `[DONE]` ends the stream.
func (d *chat) ResponseEvent(ev sse.Event) error {
	if data := strings.TrimSpace(ev.Data); ev.Event == "error" && data != "" && data != "[DONE]" {
		d.c.errText = joinNonEmpty("\n", d.c.errText, errorOr(data))
		return nil
	}
	var chunk chatResponse
	ok, err := eventJSON(&d.response, &d.c, ev, "chat completions chunk", &chunk)
	if ok {
		d.apply(&chunk)
	}
	return err
}

// errorOr returns the API error message of data, or data itself.
func errorOr(data string) string {
	if s := errorText([]byte(data)); s != "" {
		return s
	}
	return "error: " + data
}

func (d *chat) apply(r *chatResponse) {
	c := &d.c
	c.decoded = true
	if r.Model != "" {
		c.model = r.Model
	}
	if r.Usage != nil {
		c.inputTokens = r.Usage.PromptTokens
		c.outputTokens = r.Usage.CompletionTokens
	}
	for _, ch := range r.Choices {
		if ch.Index != 0 {
			continue
		}
		if ch.FinishReason != nil && *ch.FinishReason != "" {
			c.finishReason = *ch.FinishReason
		}
		if m := ch.Message; m != nil {
			c.text.WriteString(joinNonEmpty("\n", openAIContent(m.Content), m.Refusal))
			for i, tc := range m.ToolCalls {
				call := c.call(strconv.Itoa(i))
				call.ID, call.Name, call.Arguments = tc.ID, tc.Function.Name, tc.Function.Arguments
			}
		}
		if dl := ch.Delta; dl != nil {
			if dl.Content != nil {
				c.text.WriteString(*dl.Content)
			}
			if dl.Refusal != nil {
				c.text.WriteString(*dl.Refusal)
			}
			for i, tc := range dl.ToolCalls {
				idx := i
				if tc.Index != nil {
					idx = *tc.Index
				}
				call := c.call(strconv.Itoa(idx))
				if tc.ID != "" {
					call.ID = tc.ID
				}
				if tc.Function.Name != "" {
					call.Name = tc.Function.Name
				}
				call.Arguments += tc.Function.Arguments
			}
		}
	}
}

// Finish implements Decoder.
func (d *chat) Finish() (*event.LLMCompletion, error) {
	var r chatResponse
	ok, err := bodyJSON(&d.response, &d.c, "chat completions response", &r)
	if ok {
		d.apply(&r)
	}
	return d.c.done(&d.response, err)
}
