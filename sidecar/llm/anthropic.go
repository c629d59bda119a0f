package llm

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/sidecar/sse"
)

// anthropic decodes the Anthropic messages API (POST /v1/messages).
type anthropic struct {
	response
	c completion
	// blocks maps a streamed content block index to its kind: "text",
	// "tool_use" or another type, which is not recorded.
	blocks map[int]string
	usage  anthropicUsage
}

func newAnthropic(provider string) *anthropic {
	d := &anthropic{c: completion{provider: provider}, blocks: map[int]string{}}
	d.onEvent = d.ResponseEvent
	return d
}

// Provider implements Decoder.
func (d *anthropic) Provider() string { return d.c.provider }

type anthropicBlock struct {
	Type string `json:"type"`
	Text string `json:"text"`
	// tool_use
	ID    string          `json:"id"`
	Name  string          `json:"name"`
	Input json.RawMessage `json:"input"`
	// tool_result
	ToolUseID string          `json:"tool_use_id"`
	Content   json.RawMessage `json:"content"`
	IsError   bool            `json:"is_error"`
}

type anthropicRequest struct {
	Model    string          `json:"model"`
	System   json.RawMessage `json:"system"`
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
	Tools []struct {
		Name string `json:"name"`
		Type string `json:"type"`
	} `json:"tools"`
}

// Request implements Decoder.
func (d *anthropic) Request(body []byte) (*event.LLMPrompt, error) {
	var req anthropicRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("%w: messages request: %w", ErrMalformed, err)
	}
	p := &event.LLMPrompt{Provider: d.c.provider, Model: req.Model, System: anthropicContent(req.System)}
	for _, m := range req.Messages {
		p.Messages = append(p.Messages, event.LLMMessage{Role: m.Role, Content: anthropicContent(m.Content)})
	}
	for _, t := range req.Tools {
		name := t.Name
		if name == "" {
			name = t.Type
		}
		p.Tools = append(p.Tools, name)
	}
	return p, nil
}

// anthropicContent flattens content: a string or an array of blocks. Tool
// uses and results are rendered as text so they are recorded (and masked)
// with the message.
func anthropicContent(raw json.RawMessage) string {
	if len(raw) == 0 || raw[0] != '[' {
		return jsonText(raw)
	}
	var blocks []anthropicBlock
	if json.Unmarshal(raw, &blocks) != nil {
		return jsonText(raw)
	}
	out := make([]string, 0, len(blocks))
	for _, b := range blocks {
		switch b.Type {
		case "text":
			out = append(out, b.Text)
		case "tool_use", "server_tool_use":
			out = append(out, toolUseText(b.Name, jsonText(b.Input)))
		case "tool_result":
			s := anthropicContent(b.Content)
			if b.IsError {
				s = "[tool error] " + s
			}
			out = append(out, s)
		default:
			out = append(out, "["+b.Type+"]")
		}
	}
	return strings.Join(out, "\n")
}

type anthropicUsage struct {
	InputTokens              int64 `json:"input_tokens"`
	OutputTokens             int64 `json:"output_tokens"`
	CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64 `json:"cache_read_input_tokens"`
}

// merge takes the non-zero counts of u: message_delta repeats only some.
func (a *anthropicUsage) merge(u *anthropicUsage) {
	if u == nil {
		return
	}
	for _, f := range []struct{ dst, src *int64 }{
		{&a.InputTokens, &u.InputTokens}, {&a.OutputTokens, &u.OutputTokens},
		{&a.CacheCreationInputTokens, &u.CacheCreationInputTokens},
		{&a.CacheReadInputTokens, &u.CacheReadInputTokens},
	} {
		if *f.src != 0 {
			*f.dst = *f.src
		}
	}
}

type anthropicMessage struct {
	Model      string           `json:"model"`
	Content    []anthropicBlock `json:"content"`
	StopReason string           `json:"stop_reason"`
	Usage      *anthropicUsage  `json:"usage"`
}

type anthropicEvent struct {
	Type         string            `json:"type"`
	Index        int               `json:"index"`
	Message      *anthropicMessage `json:"message"`
	ContentBlock *anthropicBlock   `json:"content_block"`
	Delta        *struct {
		Type        string `json:"type"`
		Text        string `json:"text"`
		PartialJSON string `json:"partial_json"`
		StopReason  string `json:"stop_reason"`
	} `json:"delta"`
	Usage *anthropicUsage `json:"usage"`
	Error *struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

// ResponseEvent implements Decoder.
func (d *anthropic) ResponseEvent(ev sse.Event) error {
	var e anthropicEvent
	if ok, err := eventJSON(&d.response, &d.c, ev, "messages event", &e); !ok {
		return err
	}
	if e.Type == "" {
		e.Type = ev.Event
	}
	c := &d.c
	c.decoded = true
	key := strconv.Itoa(e.Index)
	switch e.Type {
	case "message_start":
		if m := e.Message; m != nil {
			c.model = m.Model
			d.usage.merge(m.Usage)
		}
	case "content_block_start":
		if b := e.ContentBlock; b != nil {
			d.blocks[e.Index] = b.Type
			switch b.Type {
			case "text":
				if c.text.Len() > 0 {
					c.text.WriteString("\n")
				}
				c.text.WriteString(b.Text)
			case "tool_use":
				call := c.call(key)
				call.ID, call.Name = b.ID, b.Name
				// The start block carries an empty input; the arguments
				// arrive as input_json_delta.
				if in := jsonText(b.Input); in != "{}" {
					call.Arguments = in
				}
			}
		}
	case "content_block_delta":
		if e.Delta == nil {
			break
		}
		switch e.Delta.Type {
		case "text_delta":
			c.text.WriteString(e.Delta.Text)
		case "input_json_delta":
			if d.blocks[e.Index] == "tool_use" {
				c.call(key).Arguments += e.Delta.PartialJSON
			}
		}
	case "message_delta":
		if e.Delta != nil && e.Delta.StopReason != "" {
			c.finishReason = e.Delta.StopReason
		}
		d.usage.merge(e.Usage)
	case "error":
		if e.Error != nil {
			c.errText = joinNonEmpty("\n", c.errText, "error: "+joinNonEmpty(": ", e.Error.Type, e.Error.Message))
		}
	}
	return nil
}

// Finish implements Decoder.
func (d *anthropic) Finish() (*event.LLMCompletion, error) {
	var m anthropicMessage
	ok, err := bodyJSON(&d.response, &d.c, "messages response", &m)
	if ok {
		d.apply(&m)
	}
	// Input tokens count the cached prompt too: all of it was sent.
	d.c.inputTokens = d.usage.InputTokens + d.usage.CacheCreationInputTokens + d.usage.CacheReadInputTokens
	d.c.outputTokens = d.usage.OutputTokens
	return d.c.done(&d.response, err)
}

func (d *anthropic) apply(m *anthropicMessage) {
	c := &d.c
	c.decoded = true
	c.model = m.Model
	c.finishReason = m.StopReason
	d.usage.merge(m.Usage)
	var texts []string
	for i, b := range m.Content {
		switch b.Type {
		case "text":
			texts = append(texts, b.Text)
		case "tool_use":
			call := c.call(strconv.Itoa(i))
			call.ID, call.Name, call.Arguments = b.ID, b.Name, jsonText(b.Input)
		}
	}
	c.text.WriteString(strings.Join(texts, "\n"))
}
